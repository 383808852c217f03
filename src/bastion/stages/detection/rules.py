"""Bastion's own attack signatures.

Every rule has a stable numeric ID (the thousands digit group names the category), a
category, a paranoia level (1 = only shapes that almost never occur in legitimate input;
higher levels add broader rules that also catch more benign text), and a severity that
adds to the request's anomaly score. A request is blocked when its score reaches the
configured threshold (5 by default), so a single critical rule blocks, while weaker
signals must add up.

Patterns are matched case-insensitively against the normalised views of each input (see
:mod:`bastion.stages.detection.normalize`). They must compile in both hyperscan and RE2:
no backreferences, no lookaround. Neither engine backtracks, so no pattern can cause
catastrophic matching time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, get_args

from bastion.stages.detection.programs import PROGRAM_FAMILIES, PROGRAMS, WORD_PROGRAMS, alternation

Category = Literal[
    "sqli",
    "xss",
    "cmdi",
    "path_traversal",
    "rfi",
    "ssrf",
    "nosqli",
    "ldapi",
    "xxe",
    "ssti",
    "jndi",
    "crlf",
    "ssi",
    "mail_header",
    "prototype_pollution",
    "recon",
    "protocol",
]
CATEGORIES: tuple[Category, ...] = get_args(Category)


class Severity(IntEnum):
    """How much one matched rule adds to the anomaly score."""

    CRITICAL = 5
    ERROR = 4
    WARNING = 3
    NOTICE = 2


@dataclass(frozen=True, slots=True)
class Rule:
    """One signature. ``pattern`` is empty for rules implemented in code (detectors)."""

    id: int
    category: Category
    paranoia: int
    severity: Severity
    pattern: str
    description: str


C, E, W, N = Severity.CRITICAL, Severity.ERROR, Severity.WARNING, Severity.NOTICE

#: Start and end of a value. The matcher scans many views at once separated by NUL, so
#: anchors must also accept a NUL (a NUL inside a value is itself an evasion marker).
BOL = r"(?:^|\x00)"
EOL = r"(?:$|\x00)"
#: Start and end of a value only (in multi-line mode ``^`` and ``$`` also match at each
#: line's start and end).
START = r"(?:\A|\x00)"
END = r"(?:\z|\x00)"

# Shared pieces. Kept small and explicit; every alternation is a fixed word list.
_SHELL_CMDS = (
    "wget|curl|nc|ncat|netcat|bash|sh|zsh|ksh|csh|dash|python[23]?|perl|ruby|php|node|"
    "nslookup|getent|uname|whoami|ifconfig|ipconfig|chmod|chown|powershell|pwsh|cmd|cmd\\.exe|"
    "certutil|busybox|systeminfo|tasklist|xxd|telnet|tftp|nohup|rev|id|ls|ping|dig|"
    "cat|sleep|echo|printf|rm|kill|env|net\\s+user|dir|type|set\\s+/a|whoami|hostname|passwd|"
    "crontab|base64|socat|mkfifo|eval|exec|sudo|su|useradd|timeout|tail|head|more|less|find|"
    "sed|awk|chmod|touch|tee|xargs"
)
_SHELL_SAFE_WORDS = (
    "wget|curl|nc|ncat|netcat|bash|sh|zsh|ksh|csh|python[23]?|perl|ruby|php|nslookup|getent|"
    "uname|whoami|ifconfig|ipconfig|chmod|chown|powershell|pwsh|cmd|cmd\\.exe|certutil|busybox|"
    "systeminfo|tasklist|xxd|telnet|tftp|nohup|rev|id|ls|ping|socat|mkfifo|sudo|useradd|crontab"
)
#: A shell operator, a backtick (not the second of a pair) or "$(".
_SHELL_OPERATOR = r"(?:[;&|]|[^\x60\x00]\x60|\$\()"
#: What reads as a command's first argument, not a word of prose: an option, a path, a
#: variable or quoted string, a number (an address, a count), a file or host name with an
#: extension, host:port, a URL.
_CMD_ARG = r"[ \t]+(?:-{1,2}[a-z]|[./~$'\"\\{]|\d|[\w-]+\.[a-z]{2,}|[\w.-]+:\d|[a-z]+://)"
#: The same after a line break, where prose puts a number or a dot after a word at the
#: start of a line ("ID 4521 is wrong", "Rev 2 of the board", "Id ... hm"): an IP address,
#: not any number; a path, not any dot.
_LINE_ARG = (
    r"[ \t]+(?:-{1,2}[a-z]|\.{0,2}/|~/|[$'\"\\{]|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[\w-]+\.[a-z]{2,}"
    r"|[\w.-]+:\d|[a-z]+://)"
)
#: SQL functions an injection probes with, whose names are neither English words nor Python
#: built-ins: after a boolean operator they are SQL (MySQL, PostgreSQL, SQL Server, Oracle,
#: SQLite, DB2).
_SQL_FUNCTIONS = (
    "json_extract|json_depth|extractvalue|updatexml|ascii|substr(?:ing)?|length|char|concat|elt|"
    "make_set|exp|floor|rand|row|exists|mid|unhex|instr|concat_ws|group_concat|ifnull|isnull|"
    "nullif|coalesce|datalength|db_name|user_name|pg_sleep|load_file|current_setting|sys_context|"
    "utl_inaddr\\.[a-z_]+|nchar|lcase|ucase|md5|sha1|conv"
)
#: SQL functions named like English words ("and left (the room)") or Python built-ins
#: ("and len(x) > 3"): an operand only between a literal and a comparison.
_SQL_WORD_FUNCTIONS = (
    "left|right|user|version|database|schema|count|len|lower|upper|reverse|position|locate|cast|"
    "convert|unicode|bin|hex|ord|chr|sleep|benchmark|if"
)
#: Functions that name the server, the session or the database.
_SQL_IDENTITY = (
    "version|user|database|schema|db_name|user_name|host_name|suser_s?name|connection_id|current_database|"
    "current_schema|pg_backend_pid|sqlite_version|inet_server_addr|serverproperty|sys_context"
)
#: System catalogues: where an injection reads the tables and columns of a database.
_SQL_CATALOGUES = (
    "information_schema|mysql\\.\\w|performance_schema|sys\\.(?:\\w*tables|\\w*columns|\\w*objects|\\w*logins|"
    "databases|schemas|\\w*users)|sysibm\\.|syscat\\.|sysobjects|syscolumns|"
    "sysusers|sysdatabases|master\\.(?:\\.|dbo\\.|sys)|msysobjects|all_(?:tables|tab_columns|users|objects)|"
    "user_(?:tables|tab_columns|objects|users)|dba_\\w+|v\\$\\w+|dual\\s*(?:[;)#]|--|/\\*|\\z|\\x00)|pg_\\w+|"
    "sqlite_(?:master|schema)|rdb\\$\\w+|systables"
)
#: The schemas, databases and tables every installation of an SQL engine has, and the sample
#: databases their installers ship (MySQL, PostgreSQL, SQL Server, Oracle, SQLite, DB2,
#: Access): as a whole value, what an injection asks a query to read from. Not the ones named
#: like words ("master", "model", "sys", "world").
_SQL_SYSTEM_DATABASES = (
    "information_schema|pg_catalog|pg_toast|performance_schema|mysql\\.(?:user|db|host|tables_priv|proc)"
    "|tempdb|msdb|sysobjects|syscolumns|sysdatabases|msysaccessobjects|msysobjects|msysqueries|msysrelationships"
    "|sqlite_master|sqlite_schema|sqlite_temp_master|sqlite_sequence|sysibm|syscat|sysstat|sysibmadm"
    "|northwind|adventureworks\\w*|sakila|all_tab_columns|dba_tables|dba_users"
)
#: Functions that exist only in SQL engines (MySQL, PostgreSQL, SQL Server, Oracle, SQLite,
#: DB2): no programming language an API receives code in, and no word, has these names.
_SQL_ONLY_FUNCTIONS = (
    "benchmark|concat_ws|group_concat|find_in_set|extractvalue|updatexml|xmltype|make_set|substring_index|"
    "char_length|octet_length|load_file|uncompress|uncompressed_length|sqlite_compileoption_(?:used|get)|"
    "sqlite_version|jsonb_\\w+|json_build_object|json_agg|unistr|is_srvrolemember|has_dbaccess|openrowset|"
    "opendatasource|sp_executesql|sp_oacreate|xp_\\w+|dbms_\\w+\\.\\w+|utl_\\w+\\.\\w+|sys_context|pg_read_file|"
    "pg_ls_dir|pg_read_binary_file|lo_import|lo_export|lo_get|lo_put|lo_from_bytea|current_setting|db_name|"
    "schema_name|suser_s?name|host_name|inet_server_addr|pg_backend_pid"
)
#: Objects a stacked DDL statement creates, alters or drops.
_SQL_OBJECTS = "(?:table|database|schema|user|login|role|procedure|proc|function|view|index|trigger|sequence)"
_JS_SINKS = "alert|confirm|prompt"
_EVENT = "on[a-z]{3,30}"
#: An event handler's value: anything but a JSX binding to a plain name (onClick={onClick}),
#: which is what React code pasted into an API looks like; {code(...)} still counts.
_HANDLER = r"\s*=\s*(?:[^\s{\x00]|\{[^}\x00]*[^\w.}\s\x00])"
_SCHEMES_RFI = "php|expect|phar|zip|glob|ssh2|rar|ogg|netdoc|jar|gopher|dict|tftp|ldap|rmi"

#: PHP functions that read, write or run something, and exist in no other language an API
#: receives code in (JavaScript has atob, Python base64.b64decode): called, they are PHP.
_PHP_ONLY_FUNCTIONS = (
    "shell_exec|passthru|proc_open|pcntl_exec|fsockopen|pfsockopen|base64_decode|gzinflate|gzuncompress|"
    "str_rot13|create_function|call_user_func(?:_array)?|phpinfo|get_defined_(?:functions|vars|constants)|"
    "file_put_contents|file_get_contents|highlight_file|show_source|php_uname|posix_\\w+|move_uploaded_file|"
    "assert_options|ini_set|ini_get_all|ini_restore|putenv|apache_setenv|preg_replace_callback|"
    "register_shutdown_function|register_tick_function|array_walk_recursive|hex2bin|strrev|escapeshellcmd"
)
#: Functions an injected PHP payload calls on one of the request's variables ($_GET['x'],
#: $foo): with a "$" right after the parenthesis they are PHP, whatever else shares the name
#: (not copy, file, rename, header...: Vue and AngularJS templates call handlers so named
#: on $event).
_PHP_VAR_FUNCTIONS = (
    "eval|assert|system|exec|passthru|shell_exec|popen|proc_open|include|include_once|require|require_once|"
    "unpack|pack|substr|chr|ord|str_replace|preg_replace|unserialize|serialize|print_r|var_dump|var_export|"
    "readfile|fopen|fwrite|fputs|opendir|scandir|parse_str|array_map|array_filter|usort|uasort|uksort|base64_decode|"
    "gzinflate|str_rot13|urldecode|rawurldecode"
)
#: Builtins that run code, reach files or the network, or decode, in PHP, JavaScript and
#: Python: called alone as a whole value, they are a probe of what an eval() runs.
_CALLABLE_BUILTINS = (
    "eval|exec|execfile|system|assert|popen|chr|ord|intval|printf|sprintf|substr|unpack|fopen|fread|fwrite|"
    "readfile|filegroup|fileowner|unlink|rmdir|mkdir|settimeout|setinterval|atob|btoa|require|"
    "__import__|globals|getattr|phpinfo"
)
#: Java classes that run programs, script engines, look up names or decode objects: what
#: deserialisation gadget chains and expression injections name. Not the classes of an
#: ordinary stack trace pasted into a support message (java.lang.Thread, ClassLoader,
#: URLClassLoader, java.lang.reflect, Spring's bean factory, Xerces, HikariCP).
_JAVA_DANGEROUS_CLASSES = (
    "java\\.lang\\.(?:runtime|processbuilder)\\b|javax\\.script\\.|javax\\.naming\\.(?:initialcontext|ldap)|"
    "javax\\.management\\.(?:loading|remote)|java\\.beans\\.(?:xmldecoder|eventhandler)|java\\.rmi\\.(?:server|registry)|"
    "com\\.sun\\.(?:rowset|jndi)|com\\.sun\\.org\\.apache\\.xalan\\.internal\\.xsltc|org\\.apache\\.xalan\\.xsltc|"
    "org\\.apache\\.commons\\.(?:collections\\d?\\.functors|beanutils\\.beancomparator)|org\\.apache\\.naming\\.factory|"
    "org\\.apache\\.tomcat\\.dbcp|com\\.opensymphony\\.xwork2|ognl\\.ognl(?:context|util)|"
    "org\\.springframework\\.(?:expression\\.spel|jndi)|groovy\\.lang\\.groovy(?:shell|classloader)|bsh\\.interpreter|"
    "com\\.mchange\\.v2\\.c3p0|com\\.alibaba\\.fastjson|com\\.thoughtworks\\.xstream|jdk\\.nashorn|"
    "java\\.io\\.objectinputstream"
)

#: The packages a polymorphic deserialiser (Jackson's default typing, fastjson's
#: "@type", XStream's element names) is asked to load from when an attacker names a
#: class: the Java platform's own (I/O, processes, reflection, naming, scripting, RMI,
#: CORBA) and the libraries gadget chains are built from.
_JAVA_TYPE_ROOTS = (
    "java\\.(?:io|lang|net|nio|rmi|beans|util|security|sql)|javax\\.[a-z]+|com\\.sun\\.[a-z]+"
    "|sun\\.(?:misc|reflect|rmi|net|nio|security|tools|corba|org)|jdk\\.(?:internal|nashorn|jshell|jfr)|org\\.omg"
    "|org\\.apache\\.(?:commons|xalan|xerces|xbean|tomcat|naming|catalina|struts2?|bcel|log4j|wicket|myfaces|velocity"
    "|shiro|ibatis)|org\\.springframework|org\\.codehaus\\.groovy|groovy\\.(?:lang|util|ui|xml|json|sql)"
    "|clojure\\.(?:lang|core|main)|com\\.opensymphony|ognl\\.[a-z]+|bsh\\.[a-z]+|org\\.mozilla\\.javascript"
    "|org\\.python\\.core|javassist\\.[a-z]+|com\\.alibaba\\.fastjson|com\\.thoughtworks\\.xstream|com\\.mchange"
    "|org\\.hibernate|oracle\\.jdbc|net\\.sf\\.json"
)

#: Programs Unix-like and Windows systems ship (see :mod:`.programs`): names that are not
#: words, and names that are.
_PROGRAM = alternation(PROGRAMS) + "|" + PROGRAM_FAMILIES
_WORD_PROGRAM = alternation(WORD_PROGRAMS)
_ANY_PROGRAM = alternation(PROGRAMS + WORD_PROGRAMS) + "|" + PROGRAM_FAMILIES
#: What may come before a command line at a value's start: spaces, a chain operator or a
#: backtick, a quote, a bin directory.
_CMD_LEAD = r"[ \t]{0,8}(?:(?:[;&|]{1,2}|\x60)[ \t]{0,8})?['\"]?(?:(?:/usr(?:/local)?)?/s?bin/)?"
#: What makes a program that is not a word a command: its first argument is an option, a
#: path, a variable or a quoted string, a file or host name, an IPv4 address or a URL; or a
#: pipe, a background "&", a redirection or the line's end follows it. (Not ";": HTTP's
#: lists write "gzip;q=1.0", and a program chained after ";" is 3049's.)
_CMD_FIRST = (
    r"['\"]?(?:[ \t]+(?:-{1,2}[a-z0-9]|[./~$'\"\\]|[a-z]:\\|[\w-]+\.[a-z]{2,}|\d{1,3}(?:\.\d{1,3}){3}|[a-z]+://)"
    r"|[ \t]*(?:[|&<>\x60]|\$\(|[\r\n]+[ \t]*" + END + r"))"
)
#: Programs that run the command after them: "time sh", "nohup ncat", "sudo visudo".
_CMD_PREFIX = r"(?:time|nohup|sudo|doas|strace|ltrace|timeout|nice|ionice|chroot|busybox)"
#: What makes a program named like a word a command: a whole option ("-la", "--dry-run", not
#: "head-to-head"), a system, home or relative path, a redirection to a path or a stream.
_CMD_STRICT = (
    r"['\"]?[ \t]+(?:-[a-z0-9]{1,12}(?:[ \t=]|" + END + r")|--[a-z][\w-]{1,40}(?:[ \t=]|" + END + r")"
    r"|/(?:etc|bin|usr|tmp|var|dev|proc|home|root|opt|sbin|lib|sys|boot|mnt|srv|run)(?:/|[ \t]|" + END + r")"
    r"|~/|\.{1,2}/|[a-z]:\\|[0-2]?[<>]{1,2}&?[ \t]*[/~$&\d])"
)

#: An operand of cmd.exe's IF comparison: quoted, bracketed or a bare token.
_CMD_OPERAND = r"(?:\"[^\"\x00]*\"|\([^)\x00]*\)|\[[^\]\x00]*\]|\{[^}\x00]*\}|[^\s\x00=()\"]+)"
#: An operand only cmd.exe writes so: quoted, bracketed or braced, or a batch argument.
_CMD_QUOTED = r"(?:\"[^\"\x00\n]{0,64}\"|\[[^\]\x00\n]{0,64}\]|\{[^}\x00\n]{0,64}\}|%~?[0-9*])"
_CMD_COMPARE = r"(?:===?|\b(?:equ|neq|lss|leq|gtr|geq)\b)"
#: What cmd.exe runs when an IF holds: a block, a silenced command, or one of its builtins.
_CMD_BUILTINS = (
    r"(?:[(@]|(?:if|echo|goto|set|call|exit|cd|chdir|cmd|start|del|erase|copy|move|type|dir|ren|md|mkdir|rd|pushd|popd"
    r"|net|ping|powershell|shift|pause|title)\b)"
)

RULES: tuple[Rule, ...] = (
    # ---------------------------------------------------------------- SQL injection 1xxx
    Rule(1001, "sqli", 1, C, r"\bunion\b[\s(]*(?:all\b|distinct\b)?[\s(]*select\b", "UNION SELECT query merge"),
    Rule(1002, "sqli", 1, C, r"\b(?:sleep|benchmark|pg_sleep)\s*\(\s*[\d(]", "time delay function"),
    Rule(1003, "sqli", 1, C, r"\bwaitfor\s+(?:delay|time)\s+['\"]", "T-SQL WAITFOR delay"),
    Rule(1004, "sqli", 1, C, r"/\*!\d*\s*[a-z]", "MySQL versioned comment"),
    Rule(1005, "sqli", 1, C, r"\bdeclare\s+@\w+\s", "T-SQL variable declaration"),
    Rule(
        1006,
        "sqli",
        1,
        C,
        r"\b(?:xp_cmdshell|sp_executesql|sp_oacreate|xp_dirtree|xp_regread)\b",
        "dangerous stored procedure",
    ),
    Rule(1007, "sqli", 1, C, r"\binformation_schema\s*\.\s*(?:tables|columns|schemata)\b", "schema enumeration"),
    Rule(
        1008,
        "sqli",
        1,
        C,
        r";\s*(?:drop|truncate|alter)\s+(?:table|database|schema|user|procedure|function)\b",
        "stacked destructive statement",
    ),
    Rule(
        1009,
        "sqli",
        1,
        C,
        # The quoted operands may hold LIKE wildcards: "x%' OR 'b%'='b" closes a LIKE pattern.
        r"(?:['\"\x60]|\d)\s*\)*\s*(?:and|or|xor|&&|\|\|)\s+\(*\s*(?:['\"]?\d+['\"]?|['\"]"
        r"[\w%]*['\"])\s*(?:=|<|>|!=|<>|like)\s*(?:['\"]?\d+|['\"][\w%]*['\"]?)",
        "boolean tautology after a literal",
    ),
    Rule(
        1010,
        "sqli",
        1,
        C,
        # ("if(" only unspaced: "or if (you prefer)" is prose.)
        r"\b(?:and|or|xor)\s+(?:not\s+)?\(*\s*(?:@@[a-z_]\w*|if\(|(?:" + _SQL_FUNCTIONS + r")\s*\()",
        "boolean condition on an SQL function or system variable",
    ),
    Rule(
        1027,
        "sqli",
        1,
        C,
        r"(?:['\"\x60]|\b\d+)\s*\)*\s*(?:and|or|xor)\s+(?:not\s+)?\(*\s*(?:" + _SQL_WORD_FUNCTIONS
        + r")\s*\([^\x00]{0,80}\)\s*(?:=|<>|!=|<|>|\blike\b|\bbetween\b|\bis\b|\bin\s*\()",
        "literal, boolean operator, then a comparison of an SQL function's result",
    ),
    Rule(
        1011,
        "sqli",
        1,
        C,
        r"\b(?:extractvalue|updatexml)\s*\(\s*(?:\d|null|rand|concat)",
        "XML function error-based extraction",
    ),
    Rule(
        1012,
        "sqli",
        1,
        C,
        r"\bselect\b[\s(]*[\w@*,`\"'\s]{0,80}[\s)]from[\s(]+(?:select\b|users?\b)",
        "SELECT from a users table or a subquery",
    ),
    Rule(
        1013,
        "sqli",
        1,
        C,
        r"\b(?:group_concat|load_file|sys\.fn_varbintohexstr|master\.\.|into\s+(?:out|dump)file)\b",
        "data exfiltration function",
    ),
    Rule(
        1014,
        "sqli",
        1,
        E,
        # ("--" ending the value is a comment too: only MySQL wants a space after it. A quote
        # right after "=" opens an attribute's value, as in markup's href="#top" and an
        # SVG's <use href="#icon">: it breaks no string.)
        r"(?:" + BOL + r"|[^=\s\x00])\s*['\"\x60]\s*\)*\s*(?:;|--(?:[\s\x00-\x1f]|\z)|#|/\*)",
        "string break followed by a terminator",
    ),
    Rule(
        1015,
        "sqli",
        1,
        C,
        r"['\"]\s*\)*\s*;\s*(?:select|insert|update|delete|drop|exec|declare|shutdown|(?:create|alter|tru"
        r"ncate|rename)\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?" + _SQL_OBJECTS + r"|grant\s|revoke\s)\b",
        "string break into a stacked query",
    ),
    Rule(1016, "sqli", 1, C, r"\b(?:order|group)\s+by\s+\d+\s*(?:--|#|/\*)", "column count probe"),
    Rule(
        1017,
        "sqli",
        2,
        W,
        r"\bselect\s+(?:\*|[\w.@`\"]+(?:\s*,\s*[\w.@`\"]+)*)\s+from\s+[\w.`\"\[\]]+\s+where\b",
        "SELECT ... FROM ... WHERE statement",
    ),
    Rule(1018, "sqli", 1, C, r"\bexec(?:ute)?\s+(?:master\.|xp_|sp_|\()", "EXEC of a procedure"),
    Rule(1019, "sqli", 1, C, r"'\s*\+\s*\(\s*select\b", "concatenated subquery"),
    Rule(
        1020,
        "sqli",
        2,
        W,
        r"\b(?:select|union|insert|update|delete)\b[^\x00]{0,60}\b(?:from|into|set|where)\b",
        "SQL statement shape",
    ),
    Rule(1021, "sqli", 1, E, r"\)\s*(?:and|or)\s+\d+\s*(?:=|<|>)\s*\d+", "tautology after a closing parenthesis"),
    Rule(1022, "sqli", 1, C, r"\b(?:and|or)\s+\d+\s*=\s*\d+\s*(?:--|#|/\*|" + EOL + ")", "tautology then comment"),
    Rule(
        1023,
        "sqli",
        1,
        C,
        r"\bselect\b[^\x00;]*\bfrom[\s(]+[\[`\"]?(?:" + _SQL_CATALOGUES + r")",
        "SELECT from a system catalogue",
    ),
    Rule(
        1024,
        "sqli",
        1,
        C,
        r"\bselect\s+(?:@@[a-z_]\w*|(?:" + _SQL_IDENTITY + r")\s*\(\s*\)|(?:current|session|system)_user\b)",
        "SELECT of the server's version or identity",
    ),
    Rule(
        1025,
        "sqli",
        1,
        C,
        r"['\"]\s*\|\|\s*\(?\s*(?:select\b|[a-z_][\w$]*\.[a-z_][\w$.]*\s*\(|(?:"
        + _SQL_FUNCTIONS
        + "|"
        + _SQL_WORD_FUNCTIONS
        + r")\s*\()"
        # SQL Server concatenates with "+", as JavaScript does: only what no script calls.
        + r"|['\"]\s*\+\s*\(?\s*(?:select\b|@@[a-z_]\w*|(?:convert|cast|" + _SQL_FUNCTIONS + r")\s*\()",
        "string concatenated with a query, a package call or an SQL function",
    ),
    Rule(
        1026,
        "sqli",
        1,
        C,
        r"['\"\x60]\s*\)*\s*(?:or|and|xor|\|\||&&)\s+\(*\s*[\w'\"(),:.]{1,60}\s*(?:=|<>|!=|<=?|>=?|\blike\b)\s*"
        r"[\w'\"]{1,30}\s*\)*\s*(?:--|#|/\*)",
        "string break into a comparison, then a comment",
    ),
    Rule(
        1028,
        "sqli",
        1,
        E,
        # PostgreSQL's cast of a string literal or a call's result ("'{}'::jsonb @> ...",
        # "starts_with(password,'a')::int"): SQL syntax no prose or other language has. On its
        # own a hint (a pasted query casts too); with another SQL signal it blocks.
        r"(?:['\"]|\))\s*::\s*(?:jsonb?|int[248]?|integer|bigint|smallint|text|varchar|char|numeric|bool(?:ean)?"
        r"|regclass|regproc|bytea|xml|oid|name)\b",
        "PostgreSQL cast of a literal or a call's result",
    ),
    Rule(
        1029,
        "sqli",
        1,
        N,
        # A value with a quote that ends in an SQL comment ("' or true--", "x' AND a IS NULL;
        # --"): what cuts off the rest of the query. A hint; with libinjection's verdict it
        # blocks. ("#" only after a space, a quote or a parenthesis: "C#" ends prose.)
        r"['\"\x60][^\x00]*(?:--|[\s'\")]#|/\*)[\s+-]*" + END,
        "quoted value ending in an SQL comment",
    ),
    Rule(
        1030,
        "sqli",
        1,
        C,
        # A boolean operator then a JSON literal in quotes then one of PostgreSQL's or
        # MySQL's JSON operators ("OR '{\"b\":2}'::jsonb <@ '{...}'", "or '[1,2]' ? '1'",
        # "and '{...}' -> '$.a' = 1"): a comparison of two literals, which only a tautology
        # needs; a pasted query compares a column.
        r"\b(?:or|and|not|xor)\s+'[\[{][^'\x00]*'\s*(?:::\s*jsonb?\b|<@|@>|\?[|&]?\s*(?:'|array\b)|->>?\s*'|#>>?\s*')",
        "JSON literal compared with a JSON operator after a boolean",
    ),
    Rule(
        1031,
        "sqli",
        1,
        C,
        # Functions only SQL engines have (their names are neither words nor functions of a
        # language an API receives code in), called: "benchmark (", "concat_ws(",
        # "sqlite_compileoption_used (id)", "jsonb_pretty(", "utl_http.request(".
        r"\b(?:" + _SQL_ONLY_FUNCTIONS + r")\s*\(",
        "SQL-only function called",
    ),
    Rule(
        1032,
        "sqli",
        1,
        C,
        # The system catalogue or database as a whole value ("information_schema", "pg_catalog",
        # "mysql.user", "tempdb") or read from after FROM in any spelling; a row inserted by a
        # statement stacked after ";" ("; insert /**/ into t (c) values"); MySQL's
        # PROCEDURE ANALYSE.
        START + r"[ \t]{0,8}[\x60\"\[]?(?:" + _SQL_SYSTEM_DATABASES + r")[\x60\"\]]?[ \t]{0,8}" + END
        + r"|\bfrom\s+[\x60\"\[]?information_schema\b"
        r"|;\s*insert\s+(?:/\*[^\x00]*?\*/\s*)?into\s+[\w\x60\"\[\].]+\s*(?:\([^)\x00]*\)\s*)?(?:values|select)\b"
        r"|;\s*truncate\b|\bprocedure\s+analyse\s*\(",
        "system catalogue named, stacked INSERT, PROCEDURE ANALYSE",
    ),
    Rule(
        1034,
        "sqli",
        1,
        C,
        # A value that is the start of a probe, not a query: SELECT of a function that
        # times, branches or names the server (SELECT SLEEP(, SELECT IF(, SELECT VERSION(),
        # SELECT of one item straight to GROUP BY or HAVING (no FROM: a fragment completing
        # the application's own query), a SELECT or UNION after a parenthesis that
        # closes the query's own, or a quoted JSON literal cast and operated on. Whole
        # queries as a paste or snippet API carries them ("SELECT name FROM customers
        # WHERE ...", CREATE TABLE, UPDATE ... SET) pass.
        START + r"[ \t]{0,8}(?:['\"\x60]?[ \t]{0,8}select\s+(?:all\s+|distinct\s+)?"
        r"(?:(?:sleep|benchmark|pg_sleep|if|iif|version|user|database|current_user|char|chr|load_file"
        r"|extractvalue|updatexml)\s*\(|[\w.*]+\s+(?:group\s+by|having)\b)"
        r"|['\"\x60]?[ \t]{0,8}\)[ \t]{0,8}(?:select|union)\b"
        # A quoted JSON literal cast to PostgreSQL's json and given to a JSON operator:
        # the value is the operand of an expression, not a document.
        r"|'[\[{][^'\x00]*'\s*::\s*jsonb?\s*(?:#>>?|#-|@[?@>]|<@|->>?|\?[|&]?|-|\|\|))",
        "value that starts a SQL probe or a fragment",
    ),
    Rule(
        1035,
        "sqli",
        1,
        C,
        # One word, then the quote that closes the string it was pasted into, then the end of
        # the statement or a comment: "admin@example.com';", "alice'--", "bob`/* x */;". Text
        # that quotes a word quotes it on both sides; code ends with ';' after a call or a
        # whole quoted string, not after a bare word and a lone quote.
        START + r"[ \t]{0,8}[^\s\x00'\"\x60;]{1,128}['\"\x60][ \t]{0,8}"
        r"(?:/\*[^\x00]{0,64}?\*/[ \t]{0,8})?(?:;|--|#)[ \t]{0,8}" + END,
        "one word, a closing quote, then the statement's end or a comment",
    ),
    Rule(
        1036,
        "sqli",
        1,
        C,
        # The tail of a select list: an alias quoted as only MySQL quotes names, then FROM
        # ("` AS `total` from"), or a value that starts with a closing quote or a number,
        # then AS, a quoted alias and FROM ('7 AS "n" FROM', "' as ' from"): what completes
        # the application's own SELECT. Prose quotes with double quotes and says "as well".
        r"\x60\s*as\s+\x60[^\x60\x00]{1,64}\x60\s*from\b"
        r"|" + START + r"[ \t]{0,8}(?:[\x60\"']|\d+)\s*as\s*(?:[\x60\"'][\w ]{0,64}[\x60\"']|[\x60\"'])\s*from\b",
        "value that ends a select list: a quoted alias, then FROM",
    ),
    Rule(
        1033,
        "sqli",
        1,
        C,
        # A value that is only a function's name and an opening parenthesis ("benchmark (",
        # "rand(", "md5\("): no field's value ends so; a probe for which calls get through.
        START + r"[ \t]{0,8}[a-z_][\w.]+[ \t]{0,8}\\?=?\([ \t]{0,8}" + END,
        "value that is only a function name and an opening parenthesis",
    ),
    # --------------------------------------------------------------------------- XSS 2xxx
    Rule(2001, "xss", 1, C, r"<\s*/?\s*script\b", "script element"),
    Rule(
        2002,
        "xss",
        1,
        C,
        r"<\s*[a-z][\w:-]*\b[^\x00>]*[\s/\"'\x60;]" + _EVENT + _HANDLER,
        "element with an event handler attribute",
    ),
    Rule(2003, "xss", 1, C, r"[\"'\x60][\s/]*" + _EVENT + _HANDLER, "attribute break into an event handler"),
    Rule(
        2004,
        "xss",
        1,
        C,
        r"(?:=|\()\s*[\"'\x60]?\s*(?:j\s*a\s*v\s*a|v\s*b)\s*s\s*c\s*r\s*i\s*p\s*t\s*:",
        "javascript: or vbscript: URL in an attribute",
    ),
    Rule(2005, "xss", 1, C, r"\bjavascript\s*:\s*[\w$.\[\]'\"]+\s*[(\x60]", "javascript: URL calling a function"),
    Rule(
        2006,
        "xss",
        1,
        C,
        r"\b(?:" + _JS_SINKS + r")\s*(?:\.\s*(?:call|apply|bind)\s*\(|\)\s*\(|\?\.\s*\(|\x60)",
        "dialog function called indirectly",
    ),
    Rule(
        2007,
        "xss",
        1,
        C,
        r"\b(?:" + _JS_SINKS + r")\s*\(\s*(?:document|window|this|top|self|parent|/|\d*\s*\))",
        "dialog probe",
    ),
    Rule(2008, "xss", 1, C, r"[\"'\x60]\s*[-+*/|&^,;]\s*(?:" + _JS_SINKS + r"|eval)\s*\(", "string break into a call"),
    Rule(
        2009,
        "xss",
        1,
        C,
        r"\bdocument\s*(?:\[\s*['\"\x60]\s*(?:cookie|domain|write|location)|\.\s*(?:cookie|domain)\b)",
        "document cookie or domain access",
    ),
    Rule(
        2010,
        "xss",
        1,
        C,
        r"\beval\s*\(\s*(?:atob|unescape|decodeuri\w*|string\.fromcharcode|name\b|location)",
        "eval of decoded data",
    ),
    Rule(
        2011,
        "xss",
        1,
        C,
        # (Not "<svg": an SVG document, an icon sent as a field, is drawn; what in it runs
        # is a script, a handler or a javascript: URL, which other rules refuse, or an
        # SVG element that loads a document from a data: URL, which this one does.)
        r"<\s*(?:iframe|frame|frameset|object|embed|applet|base|meta|math|isindex)\b"
        r"|<\s*use\b[^\x00>]*\bhref\s*=\s*['\"]?\s*data\s*:",
        "active content element, or an SVG <use> of a data: URL",
    ),
    Rule(2012, "xss", 1, E, r"\bset(?:interval|timeout)\s*\(\s*['\"\x60]", "timer with code string"),
    Rule(2013, "xss", 1, C, r"\bdata\s*:\s*text/html\b", "data: URL with HTML"),
    Rule(2014, "xss", 1, E, r"\bstring\.fromcharcode\s*\(", "character code string building"),
    Rule(2015, "xss", 1, C, r"<!--[^\x00]{0,40}-->\s*<\s*[a-z]|<!\s*<", "comment before markup"),
    Rule(2016, "xss", 1, C, r"\bwindow\s*\.\s*(?:onerror|location)\s*=|\bonerror\s*=\s*eval\b", "handler hijack"),
    Rule(2017, "xss", 1, C, r"\b(?:" + _JS_SINKS + r")\s*\(\s*['\"\x60]?\s*xss", "XSS marker"),
    Rule(
        2018,
        "xss",
        1,
        C,
        r"\bconstructor\s*\(\s*['\"\x60]\s*(?:alert|confirm|prompt|eval|return)",
        "Function constructor",
    ),
    Rule(2019, "xss", 1, E, r"\b(?:alert|confirm|prompt)\s*\(", "dialog call"),
    Rule(
        2020,
        "xss",
        1,
        E,
        # (Not a name with a namespace prefix: "<x:xmpmeta>" and "<a:Title>" are XML, as in
        # the XMP metadata an image or a PDF carries; a browser runs nothing of an element
        # so named, and what would run, a handler or a script, is other rules'.)
        r"<\s*(?:img|image|video|audio|source|body|details|input|form|style|link|a|p|x)\b(?:[^\x00>:][^\x00>]*)?>",
        "markup element",
    ),
    Rule(2021, "xss", 1, E, r"\bsrcdoc\s*=|\bformaction\s*=|\bxlink:href\s*=", "attribute loading code"),
    Rule(2022, "xss", 1, C, r"\b(?:" + _JS_SINKS + r")\s*\(\s*\d+\s*\)", "dialog call with a number"),
    Rule(2023, "xss", 1, C, r"'\s*-\s*(?:alert|confirm|prompt)\s*\(", "quote break arithmetic call"),
    Rule(
        2025,
        "xss",
        1,
        C,
        # Markup that only an evasion writes: an active tag's name split by spaces ("<f o r m",
        # "<s c r i p t"), a script tag in a namespace ("< x: script"), an event handler or
        # formaction attribute opened after a quote or a tag at the end of the value
        # ('"onzoom=', "<x onend="), and a function called by a tagged template through
        # call or apply ("[].sort.call`${alert}1`", "Reflect.apply.call``").
        r"<\s*(?:f\s+o\s+r\s+m|d\s+i\s+a\s+l\s+o\s+g|s\s+c\s+r\s+i\s+p\s+t|i\s+f\s+r\s+a\s+m\s+e|s\s+v\s+g|i\s+m\s+g"
        r"|o\s+b\s+j\s+e\s+c\s+t|e\s+m\s+b\s+e\s+d|b\s+o\s+d\s+y|s\s+t\s+y\s+l\s+e|d\s+e\s+t\s+a\s+i\s+l\s+s)\b"
        r"|<\s*[a-z]*\s*:\s*(?:script|vmlframe|imagedata)\b"
        r"|(?:[\"'\x60]|<[a-z][^\s>\x00]*)\s*(?:on[a-z]{3,40}|formaction)\s*=\s*" + END
        # (or after the spaces that end an unquoted attribute, at the value's start: " onload=")
        + r"|" + START + r"[ \t\r\n]{1,8}(?:on[a-z]{3,40}|formaction)[ \t]*=[ \t]{0,8}" + END
        + r"|\.\s*(?:/\*[^\x00]*?\*/\s*)?(?:call|apply)\s*\x60",
        "split or namespaced tag, handler opened at the end, call by tagged template",
    ),
    Rule(
        2026,
        "xss",
        1,
        C,
        # Script that reaches the browser's globals without naming a function: a global's
        # member taken by a string ('window["alert"]', "window [/**/ 'ev'+'al']",
        # "(document)['cookie']"), JSFuck's building blocks ("(![]+[])", "+!![]", "[+[]]"),
        # a CSS url() to javascript:, IE's "<?import implementation", and DOM writes
        # ("document.body.appendChild(", "document.createElement(").
        # ("top", "parent", "frames" and "self" are words of prose and Python's "self['x']".)
        r"\b(?:window|globalthis|document)\s*(?:/\*[^\x00]*?\*/\s*)*\[\s*(?:/\*[^\x00]*?\*/\s*)*['\"\x60]"
        r"|\(\s*(?:window|self|top|document)\s*(?:/\*[^\x00]*?\*/\s*)*\)\s*\[\s*['\"\x60]"
        r"|\(\s*!!?\s*\[\s*\]\s*\+\s*\[\s*\]\s*\)|\+\s*!!\s*\[\s*\]|\[\s*\+\s*\[\s*\]\s*\]|\+\s*!\s*\+\s*\[\s*\]"
        r"|\burl\s*\(\s*['\"]?\s*(?:java|vb)script\b|<\?\s*import\s*implementation"
        r"|\bdocument\s*\.\s*(?:body\s*\.\s*appendchild|createelement)\s*\(",
        "browser global by string, JSFuck, url(javascript:), DOM write",
    ),
    Rule(
        2027,
        "xss",
        1,
        C,
        # A value that is only a read of what the browser knows about the page or the user
        # (its address, cookies, domain, referrer, the window's name and opener), or an
        # assignment to it: "window.location", "document.cookie=x", "window.name". A snippet
        # that uses one goes on with more code; prose says more around it. Not the names
        # APIs give their own fields ("document.url", "parent.name", Python's "self.name").
        START + r"[ \t]{0,8}(?:(?:window|globalthis)\s*\.\s*(?:location|name|opener|origin|document\s*\.\s*cookie)"
        r"|document\s*\.\s*(?:cookie|domain|location|referrer|documenturi|baseuri)|top\s*\.\s*location)"
        r"(?:\s*\.\s*[a-z]\w{0,31})*\s*(?:=[^\x00\n;]{0,128})?"
        r"[ \t;]{0,8}" + END,
        "value that is only a read or write of the page's address, cookies or window name",
    ),
    Rule(2024, "xss", 2, W, r"<\s*[a-z]+[\s/]", "tag opening"),
    # ------------------------------------------------------------- OS command injection 3xxx
    Rule(
        3001,
        "cmdi",
        1,
        C,
        _SHELL_OPERATOR + r"[ \t]*(?:"
        + _SHELL_SAFE_WORDS
        + r"|sleep|timeout|printf|echo|rm)(?:(?:[ \t]+[a-z][\w-]*){0,2}"
        + _CMD_ARG
        + r"|[ \t]*(?:[;&|\x60)<>\r\n]|\$\{?ifs|"
        + END
        + r"))",
        "shell operator then a command",
    ),
    Rule(
        3019,
        "cmdi",
        1,
        C,
        # A line break is a separator too, but prose and code put words on their own lines
        # ("id" in a GraphQL selection set, "I'd like..." in a message): the command must be
        # followed by an argument or an operator on its line, or end the value.
        r"[\r\n][ \t]*(?:" + _SHELL_SAFE_WORDS + r")(?:" + _LINE_ARG + r"|[ \t]*(?:[;&|\x60<>]|\$\{?ifs|" + END + r"))",
        "line break then a command with arguments",
    ),
    Rule(
        3002,
        "cmdi",
        1,
        C,
        r"(?:[;&|\n]|[^\x60\x00]\x60|\$\()[ \t]*(?:cat|tac|nl|head|tail|more|less|find|ls|dir|type)\s+[^\x00\s]*[/\\]",
        "separator then a file command on a path",
    ),
    Rule(3003, "cmdi", 1, C, r"\$\(\s*(?:" + _SHELL_CMDS + r")\b", "command substitution"),
    Rule(
        3004,
        "cmdi",
        1,
        C,
        r"(?:" + BOL + r"|[^\x60\x00])\x60[ \t]*(?:" + _SHELL_CMDS + r")\b[^\x00\x60\n]*\x60",
        "backtick command substitution",
    ),
    Rule(3005, "cmdi", 1, C, r"\$\{?ifs\b", "$IFS word splitting"),
    Rule(3006, "cmdi", 1, C, r"\(\s*\)\s*\{\s*:\s*;\s*\}\s*;", "Shellshock function definition"),
    Rule(
        3023,
        "cmdi",
        1,
        C,
        # Bash imports an environment variable whose value starts with "() {" as a function
        # (Shellshock and its parser variants): whatever the body, no value starts so.
        START + r"\s*\(\s*\)\s*\{",
        "value starting as a bash function definition",
    ),
    Rule(3007, "cmdi", 1, C, r"/(?:usr/)?bin/(?:ba|da|z|k|c|tc)?sh\b", "shell binary path"),
    Rule(3008, "cmdi", 1, C, r"\b(?:wget|curl)\s+(?:-[\w-]+\s+)*['\"]?(?:https?|ftp)://", "download command"),
    Rule(
        3009,
        "cmdi",
        1,
        C,
        r"\$\{\s*@?\s*(?:print|eval|system|exec|passthru|shell_exec|phpinfo|md5|assert)\s*\(",
        "PHP code in interpolation",
    ),
    Rule(3010, "cmdi", 1, C, r"<\?(?:php|=)", "PHP open tag"),
    Rule(
        3011,
        "cmdi",
        1,
        C,
        r"\b(?:system|passthru|shell_exec|popen|proc_open|pcntl_exec)\s*\(\s*['\"$]",
        "PHP command function",
    ),
    Rule(
        3012,
        "cmdi",
        1,
        C,
        r"!!python/|__import__\s*\(|\bsubprocess\.\w+\s*\(|\bos\.(?:system|popen)\s*\(",
        "Python code execution",
    ),
    Rule(
        3013,
        "cmdi",
        1,
        C,
        r"\bon\s+error\s+resume\s+next\b|\bserver\.(?:scripttimeout|createobject)\b|\bwscript\.shell\b",
        "VBScript/ASP execution",
    ),
    Rule(3014, "cmdi", 1, C, r"\$\(\(\s*\d+\s*[*+/-]\s*\d+\s*\)\)", "shell arithmetic probe"),
    Rule(3015, "cmdi", 1, C, r"\|\s*set\s+/a\s", "Windows arithmetic probe"),
    Rule(3016, "cmdi", 1, C, r"--exec\s*=|\bexec\s*\(\s*['\"]", "exec option or call"),
    Rule(3017, "cmdi", 1, C, r"\b(?:runtime\.getruntime\(\)\.exec|processbuilder)\b", "Java process execution"),
    Rule(
        3018,
        "cmdi",
        1,
        E,
        r"(?:" + BOL + r"|[;&|]\s*)(?:cat|ls|id|whoami|uname)(?:\s+-[a-z]+)*\s+/(?:etc|proc|var|tmp|home|root)\b",
        "file command on a system path",
    ),
    Rule(
        3020,
        "cmdi",
        1,
        C,
        # A value that starts with a chain operator has nothing before it to chain: any
        # word or path with an argument or an operator after it is a command there. (Not a
        # word alone: ";MiAHBvFuKP" is a password; ";id" alone is rule 3001's.)
        START + r"[ \t]*(?:\|\||&&|;)[ \t]*(?:[a-z][\w.-]+|(?:[a-z]:)?[/\\][\w./\\-]+)(?:"
        + _CMD_ARG
        + r"|[ \t]*[;&|\x60<>])",
        "command chained at the start of a value",
    ),
    Rule(
        3021,
        "cmdi",
        1,
        C,
        r"(?:[;&|\x60]|\$\()[ \t]*(?:/usr(?:/local)?)?/s?bin/[\w.-]+",
        "separator then a program in a bin directory",
    ),
    Rule(
        3022,
        "cmdi",
        1,
        C,
        # ";phpinfo();//", "');system('id');#": a statement break at the start, then a call.
        START + r"[\s'\"\x60)]*;\s*[a-z_][\w\\]*\s*\([^\x00;]*\)\s*(?:;|//|#|" + END + r")",
        "statement break then a function call at the start of a value",
    ),
    Rule(
        3024,
        "cmdi",
        1,
        C,
        # Whatever the program's name, its arguments can read as a shell's: an option then
        # another argument, a system path, a variable, a redirection to a path.
        _SHELL_OPERATOR + r"[ \t]*[a-z][\w.-]*[ \t]+(?:-{1,2}[a-z0-9][\w-]*[ \t]+(?:-|/|\d|['\"$]|[\w.-]+[ \t]+/)|"
        r"/(?:etc|bin|usr|tmp|var|dev|proc|home|root|opt|sbin|lib)/|\$\{?[a-z_]\w*|[<>]+[ \t]*/)",
        "shell operator then a program with shell arguments",
    ),
    Rule(
        3025,
        "cmdi",
        1,
        C,
        # cmd.exe's loop over a set, files, lines or numbers: "for /f %i in (...) do ...".
        r"\bfor\s+(?:/[dflr]\b[^\x00%]{0,48})?(?:%%~?[^\s\x00%]{0,32}|%~?[^\s\x00%]{1,32})\s+in\s*\("
        # and its IF on a variable: 'if "%n1%" gtr "%n2%"', 'if /i %x%==y'.
        r"|\bif\s+(?:/i\s+)?(?:not\s+)?\"?%[^%\s\x00]{1,32}%\"?\s*(?:==|equ\b|neq\b|lss\b|leq\b|gtr\b|geq\b)",
        "Windows FOR loop or IF on a variable",
    ),
    Rule(
        3035,
        "cmdi",
        1,
        C,
        # cmd.exe's IF with its own tests (a file exists, a variable is defined, an exit
        # code) or a comparison of two operands, followed by what it runs: "if exist
        # a.txt del a.txt", 'if /i "a"=="b" goto x', "if not (2 equ 2) echo". Prose that
        # says "if not defined" goes on with words, not with a command or a block; C's
        # "if (argc == 1) exit(1)" wraps an "==" in parentheses, which cmd.exe does not need.
        r"\bif\s*(?:/i\s*)?(?:not\s+)?(?:(?:exist|defined)\s+(?:\"[^\"\x00]*\"|\([^)\x00]*\)|[\w%!.:\\~-]+)"
        r"|(?:errorlevel|cmdextversion)\s+\d+"
        r"|" + _CMD_OPERAND + r"\s*" + _CMD_COMPARE + r"\s*" + _CMD_OPERAND
        + r"|\(\s*" + _CMD_OPERAND + r"\s+(?:equ|neq|lss|leq|gtr|geq)\s+" + _CMD_OPERAND + r"\s*\))\s+" + _CMD_BUILTINS,
        "Windows IF test followed by a command",
    ),
    Rule(
        3036,
        "cmdi",
        1,
        C,
        # Server-side JavaScript: node-serialize's and funcster's function markers (also as
        # the start of their base64), the Function constructor, a walk to a constructor's
        # constructor (also React Server Components' "$1:constructor:constructor"
        # references), and the process object's ways to a module loader or native code.
        r"_\$\$nd_func\$\$_|\b__js_function\b|" + START + r"xyqktkrfrlvoqyqk|\bnew\s+function\s*\("
        r"|\bconstructor\s*(?:\.|\[\s*['\"]?)\s*constructor\b|\$[0-9a-z]{1,8}:(?:constructor|__proto__|module):"
        r"|\bprocess\s*(?:\.\s*|\[\s*['\"\x60]?)(?:mainmodule|binding|dlopen)\b|\bprocess\s*\[\s*(?:req|request)\."
        r"|\brequire\s*(?:\.\s*main\s*\.\s*constructor|\[\s*(?:req|request)\.)"
        # A value that is only a probe of Node's globals: the environment, the module's
        # exports, a function opened ("process.env", "module.exports=", "function() {").
        r"|" + START + r"\s{0,8}(?:process\s*(?:\.\s*env|\[\s*['\"\x60]env['\"\x60]\s*\])"
        r"|module\s*\.\s*exports\s*=|function\s*\(\s*\)\s*\{)\s{0,8}" + END,
        "server-side JavaScript execution",
    ),
    Rule(
        3037,
        "cmdi",
        1,
        C,
        # A loop whose condition is a negated falsy constant, or a value that is nothing but
        # a loop on a constant with no body: only a denial of service writes either.
        # ("do { ... } while (true);" has more before it; "while (true) {" has a body.)
        r"\bwhile\s*\(+\s*(?:!\s*(?:false|[-+]?0|\"\"|''|\x60\x60|null|undefined|nan)|!!\s*(?:\{\s*\}|\[\s*\]|\"\"|''|\x60\x60))\s*\)"
        r"|" + START + r"[ \t]{0,8}while\s*\(+\s*(?:true|[-+]?infinity|[-+]?[1-9]\d*|new\s+date|this|string)\s*\)+"
        r"\s*;?[ \t]{0,8}" + END,
        "infinite loop on a constant",
    ),
    Rule(
        3038,
        "cmdi",
        1,
        C,
        # A PHP serialised object or custom-serialised class ('O:8:"stdClass":1:{'): what
        # unserialize() turns into an object whose magic methods run.
        r"\b[oc]:\+?\d{1,4}:\"[a-z_\\][\w\\]{0,127}\":\d{1,6}:\{",
        "PHP serialised object",
    ),
    Rule(
        3039,
        "cmdi",
        1,
        C,
        # PHP's own evasions: a code or file function split from its parenthesis by a
        # comment or a line break ("exec //x\r\n (", "FILE\r\n()"), an open tag with nothing
        # after it or "php" after a space ("test<?", "<? php echo"), the XML/PHP polyglot
        # ("<?xml :echo 1;"), a variable named by an expression ("${'_GET'}", "$ {$a}"; not
        # a template's "$ {total}"), and a function taken from an array ("[system][0](ls)").
        r"\b(?:" + _PHP_VAR_FUNCTIONS + r"|file|fopen|chr)\s*(?:(?:/\*[^\x00]*?\*/|(?://|#)[^\x00\n]*\n)\s*|[\r\n]+\s*)\("
        r"|<\?\s*(?:php\s*)?" + END + r"|<\?\s+php\b|<\?xml[\s:]*:\s*[a-z_]\w*[\s(;'\"]"
        r"|\$\s*\{\s*['\"$]"
        r"|\[\s*['\"]?(?:system|exec|passthru|shell_exec|popen|proc_open|eval|assert)['\"]?\s*\]\s*\)?\s*"
        r"(?:\[\s*\d+\s*\]|\{[^}\x00]*\})",
        "PHP function split from its call, bare open tag, variable variable, function from an array",
    ),
    Rule(
        3040,
        "cmdi",
        1,
        C,
        # The shell's own expansions: process substitution ("<(cat f)", ">(tee log)"), the
        # shell named by a variable ("$SHELL -c"), an empty variable as a spacer before a
        # command ("|$u wget"), and a value that is only a separator and a command ("; ps",
        # "&aptitude", "\\ls"), a tilde expansion ("~+", "~-1") or a brace expansion with
        # an empty or option element ("{,ip,a}", "{l,-lh}s").
        r"(?:" + START + r"|[\s;|&\x60])[<>]\(\s*[a-z][\w.-]*(?:\s[^()\x00]*)?\)"
        r"|\$\{?(?:shell|bash)\}?\s+-[a-z]*c\b|\b(?:ba|da|z|k)?sh\$\{?[a-z_]\w*\}?\s+-[a-z]*c\b"
        r"|" + _SHELL_OPERATOR + r"\s*\$\{?[a-z_]\w*\}?\s+(?:" + _SHELL_SAFE_WORDS + r")\b"
        r"|" + START + r"[ \t]{0,8}['\"]?(?:[;&|\x60]{1,2}|\\)[ \t]{0,8}(?:" + _SHELL_SAFE_WORDS
        + r"|ps|env|set|who|w|pwd|top|htop|lastlog|last|aptitude|apt|apt-get|yum|dnf|netstat|df|free|reboot|halt"
        r"|shutdown|history|printenv|groups|users|lsof|mount|visudo)['\"]?[ \t]{0,8}" + END
        + r"|" + START + r"[ \t]{0,8}~[+-]\d{0,3}[ \t]{0,8}" + END
        + r"|" + START + r"[a-z]{0,8}\{(?:,[\w-]*|[\w-]+,-[\w-]*|[\w-]+,)(?:,[\w-]*)*\}[a-z]{0,8}" + END,
        "shell process substitution, variable shell, spacer, separator and command alone, tilde or brace",
    ),
    Rule(
        3043,
        "cmdi",
        1,
        C,
        # A value that is only a function call: what a payload for an eval() or a template
        # that calls what it is given looks like, and no field's value looks like. The
        # callee has a snake_case or dotted name (curl_init, console.info), or is a
        # builtin that runs, reads or decodes something in the languages servers run; or
        # the call passes a string or another call. (Any word with an empty "()" or a
        # variable is not enough: "ecosystem()", "cheval($x)".) Product and
        # file names with a parenthesis ("Copy (2)", "Apple(US)", "IMG_2041(1)",
        # "report.v2(3)") pass: a copy's number is not an argument, except to a callee
        # whose dotted parts are all letters (console.info(1), console["info"](1)).
        START + r"[ \t]{0,8}(?:"
        r"(?:[a-z]+(?:_[a-z]+)+|[a-z_]\w*(?:\.[a-z_]\w*)+)\("
        r"(?:[ \t]*|[^()\x00\n]*[^\d\s()\x00][^()\x00\n]*(?:\([^()\x00\n]*\)[^()\x00\n]*)*)\)?"
        r"|[a-z_]+(?:(?:\.[a-z_]+)+\s*(?:\[\s*['\"][a-z_]+['\"]\s*\]\s*)?|\s*\[\s*['\"][a-z_]+['\"]\s*\]\s*)"
        r"\([^()\x00\n]*\)"
        r"|(?:" + _CALLABLE_BUILTINS + r")[ \t]*\((?:[^()\x00\n]*(?:\([^()\x00\n]*\))?)*\)?"
        r"|[a-z_]\w{2,40}[ \t]*\([ \t]*(?:['\"]|[a-z_]\w*[ \t]*\()[^\x00\n]*"
        r")[ \t]*;?\s{0,8}" + END,
        "value that is only a function call",
    ),
    Rule(
        3044,
        "cmdi",
        1,
        C,
        # A value that is a PHP configuration line ("directive = value"): what a FastCGI
        # PHP_VALUE injection, an uploaded .user.ini or an ini_set() reached through a
        # parameter writes. Only directives that change what PHP runs, includes, loads or
        # limits, and the namespaces only PHP has (opcache., mbstring., phar., zend.); not
        # the generic names other software shares ("engine=", "extension=", "session.").
        START + r"[ \t]{0,8}(?:(?:opcache|mbstring|zend|phar|xdebug)\.[a-z_]+"
        r"|auto_(?:prepend|append)_file|allow_url_(?:include|fopen)|disable_(?:functions|classes)|open_basedir"
        r"|include_path|extension_dir|sendmail_path|memory_limit|upload_tmp_dir|unserialize_max_depth"
        r"|short_open_tag|register_argc_argv|cgi\.force_redirect)"
        r"[ \t]*=[ \t]*[^\s\x00;&][^\x00\n]*" + END,
        "value that is a PHP configuration line",
    ),
    Rule(
        3045,
        "cmdi",
        1,
        C,
        # A value that starts with a cmd.exe IF comparison in cmd.exe's own syntax, whatever
        # follows it (3001's IF rule wants a builtin after it): operands quoted, bracketed or
        # braced ('if "%1"=="/?"', "if not {%1} == {}"), a batch argument (%1, %~1), or two
        # words joined by "==" with no spaces ("if /i a==b foo"). Code in other languages
        # puts spaces around "==" and a colon, "then" or a parenthesis around the test.
        START + r"[ \t]{0,8}if(?:[ \t]*/i)?(?:[ \t]+not)?[ \t]+(?:" + _CMD_QUOTED + r"[ \t]*==[ \t]*" + _CMD_QUOTED
        + r"|[\w%~.-]{1,64}==[\w%~.-]{1,64})(?:[ \t]|" + END + r")",
        "value that starts with a cmd.exe IF comparison",
    ),
    Rule(
        3046,
        "cmdi",
        1,
        C,
        # Shell arithmetic and parameter expansion: "$((...))", a whole value "$[2+2]", and
        # "${name#...}" (strip a prefix), which a shell evaluates inside a string it builds.
        # JavaScript's "${a}" template, MongoDB's "$[]" inside a path and "${VAR:-x}" in
        # configuration files are not these.
        r"\$\(\(|" + START + r"[ \t]{0,8}\$\[[\d \t+*/%-]{0,32}\][ \t]{0,8}" + END + r"|\$\{[a-z_]\w{0,31}#",
        "shell arithmetic or parameter expansion",
    ),
    Rule(
        3047,
        "cmdi",
        1,
        C,
        # PHP's variable functions: a method or static method whose name is a variable
        # ("$obj->$name(", "Foo::$fn(", "$ {x}("), how a PHP injection calls what a filter of
        # function names never sees. No other language writes "->$" or "::$" before a call.
        r"(?:->|::)[ \t]{0,8}\$[a-z_]\w{0,63}[ \t]{0,8}\(|\$[ \t]{1,8}\{[^}\x00]{1,32}\}[ \t]{0,8}\(",
        "PHP call of a function named by a variable",
    ),
    Rule(
        3048,
        "cmdi",
        1,
        C,
        # A value that is a command line: a program Unix-like or Windows systems ship, at the
        # value's start (after a chain operator, a quote or a bin directory at most), with
        # what only a shell gives it. A name that is not a word needs a shell-shaped argument
        # ("zstdcat /var/log/x.zst", "certutil -urlcache", "nmap 192.0.2.0/24"; a few plain
        # words may come first: "wevtutil qe Security /c:5"), a pipe, a redirection or the
        # line's end; a name that is also a word a whole option, a path or a redirection
        # ("sort -r", "date > /tmp/x"). Either may run a program of the first kind ("time sh
        # -c id"). "time is of the essence", "ping pong", "head-to-head", "curl examples"
        # and "Curl 8.5.0 released" pass.
        START + _CMD_LEAD + r"(?:(?:" + _ANY_PROGRAM + r")['\"]?[ \t]+['\"]?)?(?:" + _PROGRAM + r")"
        r"(?:['\"]?(?:[ \t]+[\w.:=,-]{1,32}){0,3})" + _CMD_FIRST
        + r"|" + START + _CMD_LEAD + r"(?:" + _WORD_PROGRAM + r")" + _CMD_STRICT,
        "value that is a command line: a program systems ship, with shell arguments",
    ),
    Rule(
        3049,
        "cmdi",
        1,
        C,
        # A value that starts with a command that runs or precedes another: a prefix that
        # runs the program after it ("nohup ncat", "sudo visudo", "time bsdtar") or a
        # program chained to a program ("time; ansible all", "date && kubectl").
        START + _CMD_LEAD + r"(?:(?:" + _ANY_PROGRAM + r")['\"]?[ \t]*(?:;|&&|\|\|)[ \t]*|" + _CMD_PREFIX
        + r"['\"]?[ \t]+)['\"]?(?:" + _PROGRAM + r")\b",
        "value that starts with a command chained to, or running, a program",
    ),
    Rule(
        3050,
        "cmdi",
        1,
        C,
        # After a chain operator at a value's start, a program is a command with any
        # argument, or alone (";visudo", "&& netsh advfirewall show", "| dmesg"); so is a
        # whole value that is a program in a bin directory ("bin/useradd", "/usr/bin/ab").
        # A program's name alone is not: "python", "openssl" and "curl" are tags and
        # package names.
        START + r"[ \t]{0,8}(?:[;&|]{1,2}|\x60)[ \t]{0,8}['\"]?(?:(?:" + _PROGRAM + r")['\"]?[ \t]+[^\s\x00]"
        r"|(?:" + _ANY_PROGRAM + r")['\"]?[ \t\r\n]{0,8}" + END + r")"
        r"|" + START + r"[ \t]{0,8}(?:(?:/usr(?:/local)?/|/)?s?bin/(?:" + _ANY_PROGRAM + r")"
        r"|(?:/usr(?:/local)?)?/s?bin/[\w.-]{1,32})[ \t\r\n]{0,8}" + END,
        "program alone after a chain operator, or in a bin directory, as a whole value",
    ),
    Rule(
        3051,
        "cmdi",
        1,
        C,
        # Anywhere in a value, after a separator: a program that is not a word with an
        # option (cmd.exe's "/x" too), a redirection or a cmd.exe variable ("x&bcdboot /r",
        # "; regedit /E c:\\x", '"|bcdboot %SYSTEMROOT%').
        r"(?:[;&|]|\$\()[ \t]*['\"]?(?:" + _PROGRAM + r")['\"]?(?:[ \t]*(?:/[a-z]\b|[<>])"
        r"|[ \t]+(?:-{1,2}[a-z]|%[a-z_]\w*%))",
        "separator, then a program with an option or a redirection",
    ),
    Rule(
        3042,
        "cmdi",
        1,
        C,
        # PowerShell: cmdlets that fetch, run or disarm, given an argument (an option, a
        # string, a variable, a URL, a program), Invoke-Expression's alias on an expression,
        # WebClient downloads, the shell started with its script-running options, and a
        # base64 payload decoded by .NET.
        r"\b(?:invoke-(?:webrequest|restmethod|expression|command|item|wmimethod|shellcode|mimikatz)|start-process"
        r"|start-bitstransfer|set-mppreference|add-mppreference|set-executionpolicy|get-wmiobject|get-ciminstance)"
        r"\s+(?:-[a-z]|['\"$(]|[a-z]+://|[\w.\\/:-]+\.(?:exe|ps1|bat|cmd|dll|vbs|hta)\b)"
        r"|\bnew-object\s+(?:-typename\s+)?(?:system\.)?net\.(?:webclient|sockets\.tcpclient)"
        r"|\biex\s*(?:\(|\s['\"$(])|\.\s*download(?:string|file|data)\s*\("
        r"|\bpowershell(?:\.exe)?(?:\s+-[a-z]+(?:\s+[a-z]+\b)?)*\s+-(?:e|ec|enc|encodedcommand|c|command|nop|noprofile"
        r"|w|windowstyle|exec|executionpolicy|ep)\b"
        r"|\[(?:system\.)?convert\]::frombase64string\s*\(",
        "PowerShell download, execution or defence change",
    ),
    Rule(
        3026,
        "cmdi",
        1,
        C,
        # A PHP-only function called, with whitespace, a comment or a line comment before "(".
        r"\b(?:" + _PHP_ONLY_FUNCTIONS + r")\s*(?:/\*[^\x00]*\*/\s*|#[^\x00\n]*\n\s*)?\(",
        "PHP file, network or code function call",
    ),
    Rule(
        3027,
        "cmdi",
        1,
        C,
        # A function called on a PHP variable ($_GET['c'], $x), with or without comments between.
        r"\b(?:" + _PHP_VAR_FUNCTIONS + r")\s*(?:/\*[^\x00]*\*/\s*|#[^\x00\n]*\n\s*)?\(\s*@?\$[a-z_]"
        r"|\b(?:system|exec|passthru|shell_exec|popen)\s*\(\s*(?:" + _SHELL_SAFE_WORDS + r")\b",
        "PHP function called on a variable, or a command function on a command",
    ),
    Rule(
        3028,
        "cmdi",
        1,
        C,
        # PHP calls a string or a parenthesised name as a function: "(system)('id')",
        # "(string)"system"('id')", "'sys'.'tem'('id')", "$f('id')" at the start of a value.
        r"(?:\(\s*|[\"'])(?:system|exec|passthru|shell_exec|eval|assert|phpinfo|popen|proc_open|pcntl_exec)"
        r"\s*(?:\)|[\"'])\s*\(|[\"']\s*\.\s*[\"'][a-z_]*[\"']\s*\(|" + START
        + r"\s*(?:\$+[a-z_]\w*\s*=\s*)?@?\$+(?:\{[^}\x00]{1,32}\}|[a-z_]\w*)"
        r"(?:\s*(?:\[[^\x00()]{1,64}\]|\{[^}\x00]{1,16}\}))*\s*\(",
        "PHP string or variable called as a function",
    ),
    Rule(
        3029,
        "cmdi",
        1,
        C,
        r"\$_(?:get|post|request|cookie|server|files|env|session)\b|\$globals\s*\[|\$http_raw_post_data\b",
        "PHP request superglobal",
    ),
    Rule(
        3030,
        "cmdi",
        1,
        C,
        # PHP's short open tag before a statement ("<? echo"; "<?xml" is XML), BBCode and Smarty PHP blocks, and
        # php.ini directives an injected "-d" or ini_set turns a request into code with.
        r"<\?[\s\x00]+(?:\$|[a-z_]\w*\s*[(;'\"$])|\[/?php\]|\{/?php\}|\b(?:allow_url_include|allow_url_fopen|auto_prepend_file"
        r"|auto_append_file|disable_functions|open_basedir|safe_mode|enable_dl)\s*=",
        "PHP short tag, template PHP block or php.ini directive",
    ),
    Rule(
        3031,
        "cmdi",
        1,
        C,
        # Shell globbing spells a system path without its letters: "/???/??t /e??/p?sswd",
        # "/bi[n]/ba?h". Both segments carry a wildcard; a glob like "/*/*.json" has no letter.
        r"(?:" + START + r"|[\s;|&(\x60'\"=]|\$\()"
        r"/[a-z?*\[\]]{0,5}[?*\[][a-z?*\[\]]{0,5}/[a-z?*\[\]]*[?*\[][a-z?*\[\]]*"
        r"(?:[\s;|&)\x60'\"]|" + END + r")"
        # or a bracket expression inside a system file's name: "/etc/pas[s]wd", "/etc/[!q]asswd".
        r"|/(?:etc|proc|bin|sbin|dev|sys|root|boot)/[\w.-]*\[[^\]\x00/]{1,8}\][\w.\[\]-]*"
        # or a bracket expression glued to a path's letters with a slash or a range in it,
        # which no file name has ("/[e//]tc/[p//]asswd", "/usr/[a-z]in/bash", "/bi[n]/sh").
        r"|/[a-z]{0,8}\[[a-z]?/+[a-z]?\][a-z]{0,8}(?:/|[\s;|&)\x60'\"]|" + END + r")"
        r"|/[a-z]{0,8}\[[a-z]-[a-z]\][a-z]{0,8}/[a-z]|/[a-z]{1,8}\[[a-z]\]/[a-z]",
        "system path spelt with shell wildcards",
    ),
    Rule(
        3032,
        "cmdi",
        1,
        C,
        # A whole value that is a command line: a program (a bin directory's, or any name)
        # with an option and a system path, a shell given a script (-c), a directory change
        # chained to a command, an alias definition.
        START + r"[ \t]*(?:(?:/usr(?:/local)?)?/s?bin/[\w.-]+[ \t]+[^\x00\s]"
        r"|[a-z][\w.-]*(?:[ \t]+-{1,2}[a-z][\w-]*)+[ \t]+['\"]?"
        r"/(?:etc|var|proc|dev|root|home|tmp|bin|usr|sys|boot|opt)/"
        r"|cd[ \t]+[^\x00\s;|&]+[ \t]*(?:;|&&|\|\|)[ \t]*[a-z]"
        r"|(?:time|strace|ltrace|nohup|nice|sudo|doas|exec|watch|xargs|env)[ \t;]+(?:" + _SHELL_SAFE_WORDS + r")\b)"
        r"|\b(?:ba|da|z|k|c|tc|fi)?sh[ \t]+-[a-z]*c[ \t]+['\"]?[a-z$]"
        r"|\balias(?:[ \t]+[-+][a-z+]*)*[ \t]+['\"]?[\w.-]+['\"]?=",
        "command line as a value, shell script option or alias",
    ),
    Rule(
        3033,
        "cmdi",
        1,
        C,
        # Classes that run programs, load code or decode objects (gadget chains, OGNL, SpEL),
        # and a Java serialised object (its magic, as base64 or hex, starting the value).
        r"\b(?:" + _JAVA_DANGEROUS_CLASSES + r")|" + START + r"[ \t]*(?:ro0ab|aced0005)",
        "Java class that executes or deserialises, or a serialised object",
    ),
    Rule(
        3034,
        "cmdi",
        1,
        C,
        # A value or a name that is nothing but a class of the Java platform or of a
        # gadget library ("java.io.FileOutputStream", "org.apache.commons.collections",
        # "com.sun.org.apache"): what a polymorphic deserialiser loads when the request
        # names the type. A stack trace or prose that mentions one has more around it.
        START + r"[ \t]{0,8}(?:" + _JAVA_TYPE_ROOTS + r")(?:\.[a-z_$][\w$]*)*(?:\[\])?[ \t]{0,8}" + END,
        "value that is only a Java platform or gadget library class name",
    ),
    # -------------------------------------------------------------- path traversal / LFI 4xxx
    Rule(
        4001,
        "path_traversal",
        1,
        C,
        # Up to four dots and a ";param" (Tomcat, Spring and Jetty drop it): "....//" is what
        # a filter deleting "../" once leaves as "../", and "..;/" is read as "../".
        r"(?:\.{2,4}(?:;[^\x00\\/]{0,16})?[\\/]+){2,}|[\\/]\.\.[\\/]+\.\.(?:[\\/]|" + EOL + ")",
        "repeated parent-directory traversal",
    ),
    Rule(
        4002,
        "path_traversal",
        1,
        W,
        r"(?:" + BOL + r"|[\\/=])\.\.(?:;[^\x00\\/]{0,16})?[\\/]",
        "parent-directory traversal",
    ),
    Rule(
        4003,
        "path_traversal",
        1,
        C,
        r"(?:"
        + BOL
        + r"|[\\/.=:'\"\s])(?:etc[\\/]+(?:\.?[\\/]+)*(?:passwd|shadow|group|hosts|issue|sudoers|subuid|subgid|gshadow"
        + r"|crontab|fstab|machine-id)"
        + r"|proc[\\/]+(?:self|thread-self|\d+)[\\/]|proc[\\/]+(?:version|cpuinfo|meminfo|interrupts|mounts|kcore)\b"
        + r"|sys[\\/]+(?:class|kernel|devices|firmware)[\\/]?\b|windows[\\/]+(?:win\.ini|system32)|boot\.ini\b)",
        "sensitive system file",
    ),
    Rule(4004, "path_traversal", 1, C, BOL + r"\\\\[^\x00\\]+\\[a-z]\$", "UNC path to an administrative share"),
    Rule(
        4005,
        "path_traversal",
        1,
        E,
        r"(?:"
        + BOL
        + r"|[\\/])(?:\.ssh[\\/]|id_rsa\b|\.htaccess\b|\.htpasswd\b|web\.config\b|ntuser\.dat\b"
        + r"|\.git[\\/](?:config|head)\b|\.aws[\\/]credentials|\.env\b|\.(?:bash|zsh|mysql|psql)_history\b"
        + r"|\.(?:netrc|pgpass|npmrc|pypirc|git-credentials)\b|\.docker[\\/]config\.json|\.kube[\\/]config\b)",
        "sensitive dotfile or credential file",
    ),
    Rule(
        4006,
        "path_traversal",
        1,
        C,
        r"\bfile:/{2,3}(?:etc|proc|windows|c:|var|home|root)\b",
        "file URL to a system path",
    ),
    Rule(
        4007,
        "path_traversal",
        1,
        E,
        r"\.\.[\\/].*\.(?:ini|conf|cfg|log|ssh|key|pem|env|db|sqlite|bak)\b",
        "traversal to a config file",
    ),
    Rule(
        4008,
        "path_traversal",
        1,
        N,
        # No client writes a dot or a slash like this; old and lenient decoders read each as
        # one (see normalize.path_view). On its own a hint; with a traversal it blocks.
        r"%(?:c[01]%[0-9a-z]{2}|e0%[89][0-9a-f]%|f0%8[0-9a-f]%|f[89a-d]%[89ab][0-9a-f]"
        r"|u(?:002[ef]|005c|2024|2044|2215|2216|29f[89]|fe52|fe68|ff0[ef]|ff3c)"
        r"|25(?:2e|2f|5c|c[01]|e0|f0|u))"
        r"|%[0-9a-z]{2}%(?:[g-z][0-9a-z]|[0-9a-z][g-z])|%(?:[g-z][0-9a-z]|[0-9a-z][g-z])%[0-9a-z]{2}"
        # (Not U+2044, the fraction slash: NFKC writes the vulgar fraction "one half" with it.)
        "|\u2215|\u2216|\u29f8|\u29f9",
        "dot or slash in an evasive encoding",
    ),
    Rule(
        4009,
        "path_traversal",
        1,
        C,
        # Dots and slashes written as C hex literals: "0x2e0x2e0x2f", "0x5c0x2e.".
        r"0x(?:2e|2f|5c)(?:\.|0x(?:2e|2f|5c))",
        "dot or slash as a hex literal",
    ),
    Rule(
        4010,
        "path_traversal",
        1,
        C,
        # A value that is a path into a coding assistant's or an automation tool's hidden
        # directory, or one of their ignore files: where their API keys, MCP servers' tokens
        # and hooks live ("/.claude/settings.json", "app/.cursor/mcp.json", ".aiignore").
        # A sentence that names one has spaces in it.
        START + r"[ \t]{0,8}(?:[\w.@~-]*[\\/])*(?:\.(?:claude|cursor|continue|aider|roo|zed|cline|kiro|windsurf"
        r"|rovodev|codex|opencode|a0proj|plandex|fabric|n8n|junie|gemini|codeium|copilot|amazonq)[\\/][^\s\x00]*"
        r"|\.(?:ai|cursor|codeium|aider|claude|gemini)ignore)[ \t]{0,8}" + END,
        "path into a coding assistant's or automation tool's configuration",
    ),
    # ---------------------------------------------------------------------------- RFI 5xxx
    Rule(5001, "rfi", 1, C, r"\b(?:" + _SCHEMES_RFI + r")://", "stream wrapper or non-web URL scheme"),
    Rule(5002, "rfi", 1, C, r"\bphp://(?:filter|input|stdin|fd|memory|temp)", "PHP stream wrapper"),
    Rule(
        5003,
        "rfi",
        1,
        E,
        BOL + r"(?:https?|ftp)://[^\x00\s?#]+\.(?:txt|php\d?|phtml|sh|pl|py|jsp|asp|aspx|cgi)\?+" + EOL,
        "remote script URL with a trailing query marker",
    ),
    Rule(
        5004,
        "rfi",
        1,
        C,
        # What an include of a remote file looks like besides 5003: a whole value that is a
        # URL (or a bare scheme) ending in "?", which turns the rest of the include path into
        # a query ("https://x.example?", "ftp?"), and a script or an FTP URL on a bare IP
        # address ("http://203.0.113.9/x.php", "ftp://198.51.100.4").
        START + r"[ \t]{0,8}(?:https?|ftps?|file)(?::/{1,3}[^\s\x00?]*)?\?+[ \t]{0,8}" + END
        + r"|\b(?:https?|ftp)://(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]{2,39}\])(?::\d{1,5})?/[^\s\x00?#]*"
        r"\.(?:php\d?|phtml|txt|jsp|aspx?|cgi|pl|sh)\b|\bftps?://\d{1,3}(?:\.\d{1,3}){3}\b",
        "URL ending in '?' as a whole value, or a script or FTP URL on an IP address",
    ),
    Rule(
        6003,
        "ssrf",
        1,
        C,
        # A whole value that is an internal host name without a scheme, followed by a path
        # or a port ("localhost/", "host.docker.internal:2375/"): a fetcher that adds
        # "http://" reaches the machine or the cluster itself.
        START + r"[ \t]{0,8}(?:localhost(?:\.localdomain)?|localhost[46](?:\.localdomain[46])?"
        r"|ip(?:v)?6-(?:localhost|loopback)"
        r"|(?:host|gateway|kubernetes)\.docker\.internal|host\.containers\.internal|metadata\.google\.internal"
        r"|kubernetes\.default(?:\.svc(?:\.cluster\.local)?)?|localtest\.me|lvh\.me)\.?(?::\d{1,5})?/",
        "internal host name without a scheme",
    ),
    # ---------------------------------------------------------------------------- NoSQL 7xxx
    Rule(
        7001,
        "nosqli",
        1,
        C,
        r"\[\s*\$(?:ne|eq|gt|gte|lt|lte|in|nin|regex|where|exists|or|and|not|nor|expr|func"
        r"tion|elemmatch|type|size|all|mod|text|jsonschema)\s*\]",
        "MongoDB operator in a bracketed parameter name",
    ),
    Rule(
        7002,
        "nosqli",
        1,
        C,
        r"['\"{,]\s*\$(?:ne|gt|gte|lt|lte|nin|regex|where|exists|or|nor|expr|function|accu"
        r"mulator|elemmatch|jsonschema)\b['\"]?\s*:",
        "MongoDB operator in a document",
    ),
    Rule(7003, "nosqli", 1, C, r"\$where\b", "MongoDB $where"),
    Rule(
        7004,
        "nosqli",
        1,
        C,
        r"\bdb\.[\w$]+\.(?:insert|find|update|remove|drop|aggregate|delete\w*|mapreduce)\w*\s*\(",
        "MongoDB shell command",
    ),
    Rule(7005, "nosqli", 1, C, r"\bdo\s*\{[^\x00}]*\}\s*while\s*\(", "JavaScript busy loop"),
    Rule(
        7006,
        "nosqli",
        1,
        C,
        BOL + r"[\w'\"]*\s*;\s*(?:var|let|const)\s+\w+\s*=",
        "statement injection into server-side JavaScript",
    ),
    Rule(
        7007,
        "nosqli",
        1,
        C,
        r"\bthis\.\w+\s*(?:==|!=|\.match\s*\()|\bsleep\s*\(\s*\d{3,}\s*\)",
        "MongoDB JavaScript expression",
    ),
    # ----------------------------------------------------------------------------- LDAP 8xxx
    Rule(8001, "ldapi", 1, C, r"\(\s*[&|!]\s*\(\s*[\w.-]+\s*[~<>]?=", "LDAP filter with a logical operator"),
    Rule(8002, "ldapi", 1, C, r"\*\s*\)\s*\(\s*[|&!]?\s*\(?\s*[\w.-]+\s*=", "LDAP filter break-out"),
    Rule(8003, "ldapi", 1, C, r"\b[\w-]+:(?:dn:)?\d+(?:\.\d+)+:=", "LDAP extensible match rule"),
    Rule(8004, "ldapi", 1, C, r"\(\s*objectclass\s*=\s*\*\s*\)", "LDAP objectClass wildcard"),
    Rule(
        8005,
        "ldapi",
        1,
        E,
        r"\)\s*\(\s*(?:uid|cn|sn|mail|userpassword|objectclass|samaccountname)\s*=",
        "LDAP attribute filter chain",
    ),
    Rule(
        8006,
        "ldapi",
        1,
        C,
        # A value closing a filter and opening the next: "printer)(uid=*)", "x)(|(cn=*", "bar)(&)",
        # with the operator between them ("x)!(sn=*", "x)&(cn=a") or left open at the
        # value's end ("admin)(|", "x) ( & "): what a filter built by pasting the value in
        # reads as two. (Starting at the ")": a leading character class made it the costliest
        # rule to scan.)
        r"\)\s*[&|!]?\s*\((?:\s*[&|!]\s*\)|\s*[&|!]?\s*\(?\s*[a-z][\w.-]*\s*[~<>]?=\s*[\w*])"
        r"|\)\s*\(\s*[&|!][ \t]{0,8}" + END,
        "LDAP filter closed and another opened",
    ),
    # ------------------------------------------------------------------------------ XXE 9xxx
    Rule(
        9001,
        "xxe",
        1,
        C,
        r"<!doctype\s+[\w:.-]+\s*(?:\[|system\b|public\b)",
        "DOCTYPE with an internal subset or external ID",
    ),
    Rule(9002, "xxe", 1, C, r"<!entity\b", "entity declaration"),
    Rule(9003, "xxe", 1, C, r"\+adw(?:aiq|-|\+)|encoding\s*=\s*['\"]utf-7", "UTF-7 encoded markup"),
    Rule(
        9004,
        "xxe",
        1,
        C,
        r"<\s*(?:xi|xinclude):include\b|<\s*xsd?:(?:include|import|redefine)\b[^\x00>]*(?:https?|ftp|file)://",
        "XInclude or remote schema inclusion",
    ),
    Rule(
        9005,
        "xxe",
        1,
        C,
        r"\bxsi:(?:no)?(?:namespace)?schemalocation\s*=\s*['\"][^\x00'\"]*(?:https?|ftp|file)://",
        "remote schema location",
    ),
    # ----------------------------------------------------------------------------- SSTI 10xxx
    Rule(10001, "ssti", 1, C, r"\{\{\s*[\d\s.]+[*+/-][\d\s.*+/-]*\}\}", "arithmetic template expression"),
    Rule(
        10002,
        "ssti",
        1,
        C,
        r"\{\{[^\x00}]*(?:__class__|__globals__|__mro__|__subclasses__|__builtins__|__init"
        r"__|config\b|lipsum|cycler|joiner|request\.|self\b|\.constructor)",
        "template object walk",
    ),
    Rule(10003, "ssti", 1, C, r"[$#@]\{\s*[\d\s.]+[*+/-][\d\s.*+/-]*\}", "arithmetic expression-language probe"),
    Rule(
        10004,
        "ssti",
        1,
        C,
        r"<#(?:assign|import|include)\b|freemarker\.template|\?new\s*\(\s*\)",
        "FreeMarker directive",
    ),
    Rule(
        10005,
        "ssti",
        1,
        C,
        r"[$#*]\{[^\x00}]*(?:t\s*\(\s*java\.|getruntime|getclass|class\.forname|\.exec\s*\()",
        "expression language code execution",
    ),
    Rule(
        10006,
        "ssti",
        1,
        C,
        r"\{%\s*(?:import|include|extends|set|for|if|macro|debug|raw)\b[^\x00%]*%\}[^\x00]{0,200}\{\{",
        "Jinja/Twig block with output",
    ),
    Rule(10007, "ssti", 1, C, r"<%=?\s*(?:system|exec|eval|runtime|process|`|7\s*\*)", "ERB/JSP scriptlet"),
    # ----------------------------------------------------------------------------- JNDI 11xxx
    Rule(11001, "jndi", 1, C, r"\$\{\s*jndi\s*:", "Log4j JNDI lookup"),
    Rule(
        11002,
        "jndi",
        1,
        C,
        r"\$\{[^\x00}]{0,60}\$\{\s*(?:lower|upper|env|sys|::-|date|base64|main|java|ctx)\b",
        "nested Log4j lookup",
    ),
    Rule(11003, "jndi", 1, C, r"\$\{\s*(?:ldap|ldaps|rmi|dns|iiop|corba|nds|nis)\s*:", "JNDI protocol lookup"),
    # ----------------------------------------------------------------------------- CRLF 12xxx
    Rule(
        12001,
        "crlf",
        1,
        C,
        r"[\r\n]\s*(?:set-cookie|location|content-(?:type|length|disposition)|refresh|acce"
        r"ss-control-[\w-]+|x-[\w-]+|host|transfer-encoding)\s*:",
        "header injection after a line break",
    ),
    Rule(12002, "crlf", 1, C, r"[\r\n]\s*http/\d", "response splitting"),
    Rule(
        12006,
        "crlf",
        1,
        C,
        # A value that is an HTTP request line ("GET http://host/ HTTP/1.1"): the request a
        # smuggling or splitting payload makes a server or a proxy read as its own next one.
        START + r"[ \t]{0,8}(?:get|post|put|patch|delete|head|options|connect|trace)[ \t]+[^\s\x00]+[ \t]+"
        r"http/\d(?:\.\d)?[ \t]{0,8}" + END,
        "value that is an HTTP request line",
    ),
    Rule(
        12003,
        "crlf",
        1,
        C,
        # A second request smuggled in a value: a line break, then a request line.
        r"[\r\n]\s*(?:get|post|head|put|patch|delete|options|trace|connect)\s+[^\x00\s]+\s+http/\d",
        "request line after a line break",
    ),
    Rule(
        12004,
        "crlf",
        1,
        C,
        # A script or a page setting a cookie: session fixation through an injected value.
        r"\bdocument\s*\.\s*cookie\s*=[^=]|<\s*meta\b[^>\x00]*http-equiv\s*=\s*['\"]?set-cookie"
        r"|\.cookie\s*;\s*(?:expires|domain|path|max-age)\s*=",
        "cookie set by an injected script or meta tag",
    ),
    # ------------------------------------------------------------------------------ SSI 13xxx
    Rule(
        13001,
        "ssi",
        1,
        C,
        r"<!--\s*#\s*(?:exec|include|echo|config|set|printenv|fsize|flastmod|if|elif)\b",
        "server-side include",
    ),
    # ---------------------------------------------------------------------- mail header 14xxx
    Rule(
        14001,
        "mail_header",
        1,
        C,
        r"[\r\n]\s*(?:bcc|cc|to|from|reply-to|subject|sender|return-path)\s*:\s*\S",
        "mail header after a line break",
    ),
    Rule(
        14002,
        "mail_header",
        1,
        C,
        r"[\r\n]\s*(?:(?:rcpt\s+to|mail\s+from)\s*:|(?:helo|ehlo|vrfy|expn)\s+[\w@.<-]|(?:"
        r"quit|rset|starttls|data|noop)[ \t]*(?:[\r\n]|" + EOL + "))",
        "SMTP command after a line break",
    ),
    Rule(
        14003,
        "mail_header",
        1,
        C,
        r"[\r\n]\s*[a-z]{0,4}\d+\s+(?:capability|fetch|login|select|examine|list|store|log"
        r"out|uid|search|append|copy)\b",
        "IMAP command after a line break",
    ),
    # -------------------------------------------------------------- prototype pollution 15xxx
    Rule(15001, "prototype_pollution", 1, C, r"__proto__", "__proto__ property"),
    Rule(
        15002,
        "prototype_pollution",
        1,
        C,
        r"\bconstructor\s*(?:\.|\]?\s*\[\s*['\"]?)\s*prototype\b",
        "constructor.prototype chain",
    ),
    # ---------------------------------------------------------------------------- recon 16xxx
    Rule(
        16001,
        "recon",
        1,
        C,
        r"\b(?:sqlmap|nikto|nuclei|openvas\w*|fuzz faster u fool|ffuf|gobuster|dirbuster|w"
        r"pscan|masscan|zgrab|nessus|acunetix|netsparker|w3af|havij|commix|arachni|jaeles|"
        r"dalfox|xsstrike)\b",
        "attack tool signature",
    ),
    Rule(
        16002,
        "recon",
        1,
        C,
        r"\b(?:burpcollaborator\.net|oastify\.com|oast\.(?:me|fun|pro|site|online|live)|in"
        r"teract\.sh|interactsh\.com|dnslog\.cn|ceye\.io|canarytokens\.com)\b",
        "out-of-band interaction domain",
    ),
    Rule(16003, "recon", 1, C, r"\.nasl\b", "vulnerability scanner plug-in name"),
    Rule(
        16004,
        "recon",
        1,
        C,
        r"\b__schema\s*\{|\b__type\s*\(\s*name\s*:|\bintrospectionquery\b",
        "GraphQL introspection",
    ),
)

#: Rules implemented in code rather than as a pattern.
DETECTORS: tuple[Rule, ...] = (
    # libinjection alone flags some documented filter syntaxes ("country in ('IE','GB')",
    # "a>=1;a<2"), so its verdict needs one more signal of the same kind to block.
    Rule(1901, "sqli", 1, E, "", "libinjection SQL fingerprint"),
    Rule(2901, "xss", 1, E, "", "libinjection XSS"),
    Rule(6001, "ssrf", 1, C, "", "URL to a loopback, private, link-local or metadata address"),
    Rule(6002, "ssrf", 2, E, "", "bare host in a non-canonical numeric encoding of an internal address"),
    Rule(7901, "nosqli", 1, C, "", "MongoDB query operator as a JSON key"),
    Rule(3041, "cmdi", 1, C, "", "upload named as a server-side script, a web server's own file or a PHP session"),
    Rule(4011, "path_traversal", 1, C, "", "upload named with a parent folder (../, ..\\): stored outside its folder"),
    Rule(12901, "crlf", 2, E, "", "line break in a path, query or header value"),
    Rule(12902, "crlf", 1, C, "", "line break in the path or in a parameter or cookie name"),
    Rule(12005, "crlf", 1, C, "", "a framework's session cookie sent as a query or form parameter"),
    Rule(15901, "prototype_pollution", 1, C, "", "constructor.prototype key path"),
    # The protocol checks of protocol.py: headers and encodings an upstream reads otherwise.
    Rule(17001, "protocol", 1, C, "", "header no API client sends: Proxy, Request-Range, If, Lock-Token"),
    Rule(17002, "protocol", 1, C, "", "Content-Type that is not one media type (or multipart without a boundary)"),
    Rule(17003, "protocol", 1, C, "", "charset outside the allowed ones in Content-Type or Accept"),
    Rule(17004, "protocol", 1, C, "", "multipart part name or file name that parsers split differently"),
    Rule(17005, "protocol", 1, C, "", "NUL, %uXXXX or overlong UTF-8 in the target or a form body"),
    Rule(17006, "protocol", 1, C, "", "path naming a backup copy, a database or a dump (.bak, ~, .sql, .db)"),
)

ALL_RULES: dict[int, Rule] = {r.id: r for r in (*RULES, *DETECTORS)}
