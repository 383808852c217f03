"""Names of the programs Unix-like and Windows systems ship, for the command rules.

Written from what the systems install (GNU coreutils, util-linux, procps, findutils, the
archivers, the network tools, the package managers and interpreters of the common
distributions and images, the programs of Windows' ``System32``), not from any attack
corpus. They are split by how a value that starts with one reads:

- :data:`PROGRAMS`: names that are not words of prose (``zstdcat``, ``visudo``,
  ``certutil``): a value that starts with one and goes on with a shell argument is a
  command line.
- :data:`WORD_PROGRAMS`: names that are also words or names (``find``, ``sort``,
  ``time``, ``python``, ``docker``): only an option, a system path or a redirection after
  them makes them a command.

Only used to build the patterns in :mod:`.rules` (one fixed alternation each, compiled once).
"""

from __future__ import annotations

#: GNU coreutils, util-linux, procps, findutils, the system administration tools.
_CORE = """
b2sum base32 base64 basename basenc chcon chgrp chmod chown chroot cksum csplit dircolors dirname hostid
logname md5sum mkdir mkfifo mknod mktemp nproc numfmt pathchk printenv ptx pwd readlink realpath rmdir runcon
sha1sum sha224sum sha256sum sha384sum sha512sum shuf stdbuf stty tsort unexpand uname whoami agetty blkid
blockdev cfdisk chfn chsh colcrt colrm dmesg fallocate fdisk findfs findmnt getopt hexdump hwclock ionice
ipcmk ipcrm ipcs lastb losetup lsblk lscpu lsipc lslocks lslogins lsmem lsns mcookie mkswap mountpoint namei
newgrp nsenter partx pivot_root prlimit renice rtcwake scriptreplay setarch setsid setterm sfdisk sulogin
swapoff swapon switch_root taskset umount unshare utmpdump uuidgen wdctl whereis wipefs zramctl pgrep pidof
pkill pmap pwdx slabtop snice sysctl tload vmstat xargs updatedb egrep fgrep grep diff3 sdiff dmidecode
lspci lsusb lsmod insmod rmmod modprobe depmod lsof strace ltrace gdb ldd objdump readelf chattr lsattr
getfacl setfacl setcap getcap mkfs chpasswd useradd userdel usermod groupadd groupdel gpasswd visudo adduser
deluser addgroup delgroup systemctl journalctl loginctl hostnamectl timedatectl localectl networkctl
resolvectl busctl crontab atq atrm telinit runlevel poweroff sestatus setenforce getenforce auditctl
ausearch rmt nohup ldconfig update-alternatives update-rc.d start-stop-daemon
"""
#: Archivers and compressors.
_ARCHIVES = """
gzip gunzip zcat zless zmore zgrep zdiff bzip2 bunzip2 bzcat bzless bzgrep unxz xzcat xzless xzgrep lzma
unlzma lzcat zstd unzstd zstdcat zstdgrep zstdless lz4 lz4cat unlz4 lzop unzip 7z 7za 7zr unrar cpio bsdtar
"""
#: Shells and interpreters.
_SHELLS = "sh zsh ksh mksh csh tcsh busybox toybox python2 python3 perl5 php-cgi nodejs luajit tclsh jshell irb"
#: Network clients, servers and inspection tools.
_NETWORK = """
wget curl nc ncat netcat socat telnet ssh scp sftp rsync tftp ping6 traceroute traceroute6 tracepath nslookup
whois ifconfig iwconfig netstat nmap tcpdump tshark iptables ip6tables iptables-save ufw openssl arping mtr
hping3 smbclient rpcclient ldapsearch snmpwalk showmount
"""
#: Package managers, containers, configuration management.
_PACKAGES = """
apt-get apt-cache dpkg dpkg-query zypper flatpak pip3 npm npx pnpm docker-compose podman kubectl kubeadm
crictl nerdctl ansible ansible-playbook ansible-doc ansible-galaxy ansible-vault ansible-inventory gcloud
"""
#: Compilers and build tools.
_BUILD = "gcc g++ c89 c99 clang++ cmake javac rustc"
#: Windows' System32 and its administration tools.
_WINDOWS = """
cmd cmd.exe powershell powershell.exe pwsh.exe wscript cscript mshta rundll32 regsvr32 regedit regedt32
reg.exe certutil bitsadmin wmic netsh schtasks tasklist taskkill systeminfo ipconfig nltest dsquery bcdedit
bcdboot diskpart icacls cacls takeown xcopy robocopy msiexec msbuild installutil regasm regsvcs cmstp
forfiles wevtutil vssadmin wbadmin fsutil ntdsutil esentutl extrac32 findstr mavinject odbcconf pcalua
sdbinst certreq makecab diskshadow dnscmd gpupdate qwinsta quser klist setspn tracert pathping net1 sc.exe
whoami.exe wsl bash.exe pwsh jrunscript
"""

#: Names that are also words or names of prose (coreutils' "sort", Windows' "type", the
#: interpreters and tools called like their language or product).
_WORDS = """
cat tac date dir echo env expand expr factor false fold groups head id install join link nice nl paste pr printf
seq shred sleep sort split stat sum sync tail tee test time touch true users who yes kill last look more less
mount rename rev script write free top watch find locate diff patch file strings at batch service init host route
dig ping expect make view tar zip rar xz ar ln cp mv rm dd df du ls wc tr cut od su sudo doas ip ss arp type set
start del copy move attrib format replace query runas shutdown reboot halt net sc reg tree perf vi vim nvim nano
emacs ed ex java node ruby lua go cargo gem brew git svn hg arch pinky skill bash dash aptitude snap helm az
vagrant composer python perl php pip docker terraform uptime parted nft apk rpm dnf yum pacman clang cc
"""

#: Program names that are not words of prose.
PROGRAMS: tuple[str, ...] = tuple(
    dict.fromkeys(" ".join((_CORE, _ARCHIVES, _SHELLS, _NETWORK, _PACKAGES, _BUILD, _WINDOWS)).split())
)
#: Program names that are also words or names of prose: a command only with shell arguments.
WORD_PROGRAMS: tuple[str, ...] = tuple(dict.fromkeys(_WORDS.split()))

#: Families of programs named by a pattern: versioned interpreters ("python3.12", "php8.2"),
#: and the tools Ansible, Chef and AppArmor install under their own prefix ("ansible-pull",
#: "chef-client", "aa-disable").
PROGRAM_FAMILIES = r"python[23]\.\d{1,2}|php[5-8](?:\.\d)?|perl5\.\d{1,2}|ansible-[a-z]+|chef-[a-z]+|aa-[a-z]+"


def alternation(names: tuple[str, ...]) -> str:
    """A regular expression alternation of ``names``, longest first (so that a name is not
    matched by its prefix), with the characters that are special in a pattern escaped."""
    ordered = sorted(names, key=lambda n: (-len(n), n))
    return "|".join(name.replace(".", "\\.").replace("+", "\\+") for name in ordered)
