"""Generate the benign request corpus: realistic API traffic that must never be blocked.

    python bench/detection/make_benign.py [--count 7000] [--extra 1000] [--more 600] [--seed 20240603]
                                          [--out benign.jsonl]

Seeded (``random.Random``), so the committed ``benign.jsonl`` is reproducible. The traffic
is deliberately full of lookalikes a naive WAF trips over: names like O'Brien and
D'Angelo, prose using "select", "union", "drop", "or 1", "and 1=1"-looking math, emails
with ``+``, public URLs with query strings, addresses, markdown, code snippets posted to a
paste API, SQL-like filter syntaxes that APIs document (OData, Lucene, RSQL), search
queries with quotes and operators, GraphQL queries (one-line and multi-line, in JSON and as
``application/graphql``), multi-line support messages in several languages whose lines
start with words that are also command names, markdown articles with links, tables and
fenced code, multipart uploads and form posts. After them (``--extra``, from their own seed,
so the lines before stay as they were): SOAP calls with MTOM's quoted ``Content-Type``
parameters, requests with empty headers (``Content-Type`` on a GET), support messages quoting
commands and their help text, and documentation that talks about SQL catalogues. After those
(``--more``, from a third seed): a manual's and a wiki's pages whose paths name the browser's
objects (``/docs/web-api/document.cookie``), an image's or a PDF's XMP metadata and SVG icons
sent as form and JSON fields.
Every line has ``category`` (the kind of request) and ``expect_block: false``.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

FIRST = [
    "Siobhan",
    "Sean",
    "Aoife",
    "Liam",
    "Maria",
    "José",
    "Zoë",
    "François",
    "Björn",
    "Anaïs",
    "Oluwaseun",
    "Chen",
    "Priya",
    "Mohammed",
    "Anna",
    "Dmitri",
    "Kai",
    "Noah",
    "Emma",
    "Léa",
    "Hannah",
    "Jean-Luc",
    "Mary-Kate",
    "D'Arcy",
    "Ngozi",
    "Yuki",
    "Sofía",
    "Ólafur",
    "Tomás",
]
LAST = [
    "O'Brien",
    "O'Connor",
    "D'Angelo",
    "McDonald",
    "Smith",
    "García",
    "Müller",
    "Nguyen",
    "Van der Berg",
    "de la Cruz",
    "O'Neill",
    "St. John",
    "Al-Sayed",
    "Kowalski",
    "Dupont",
    "Okafor",
    "Johansson",
    "Da Silva",
    "L'Estrange",
    "Fitzgerald-Smith",
    "Ó Súilleabháin",
    "Select",
    "Union",
    "Drop",
    "Or",
    "Null",
    "Script",
]
STREETS = [
    "Harbour Road",
    "Main St.",
    "Rue de l'Église",
    "Elm Street",
    "O'Connell Street",
    "Baker Street",
    "1st Avenue",
    "Königstraße",
    "Calle de Alcalá",
    "Drop Lane",
    "Union Square",
    "Select Court",
    "Old Mill Road #4",
    "P.O. Box 1234",
]
CITIES = [
    "Galway",
    "Dublin",
    "Paris",
    "Berlin",
    "Madrid",
    "New York",
    "São Paulo",
    "Zürich",
    "Kraków",
    "Tokyo",
    "Lagos",
    "Montréal",
    "Union City",
    "Drop City",
    "Orlando",
]
COUNTRIES = ["IE", "FR", "DE", "ES", "US", "BR", "CH", "PL", "JP", "NG", "CA", "GB"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "gmail.com", "outlook.com", "proton.me"]
PUBLIC_URLS = [
    "https://www.wikipedia.org/wiki/SQL",
    "https://en.wikipedia.org/wiki/Union_(set_theory)",
    "https://github.com/python/cpython/blob/main/README.rst",
    "https://docs.python.org/3/library/urllib.parse.html#urllib.parse.unquote",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
    "https://news.ycombinator.com/item?id=38912345",
    "https://www.google.com/search?q=select+union+drop&hl=en",
    "https://maps.google.com/?q=53.2707,-9.0568",
    "https://stackoverflow.com/questions/1234567/how-to-select-from-union-of-two-tables",
    "https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/Array/map",
    "https://example.com/path/to/page?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
    "http://example.org/index.php?page=about&lang=en",
    "https://cdn.example.net/assets/app.3f2a9c1e.js",
    "https://api.github.com/repos/octocat/hello-world/issues?state=open&per_page=50",
    "https://www.amazon.com/dp/B07JJS7WY7/ref=sr_1_1?keywords=usb+c+cable",
    "ftp://ftp.gnu.org/gnu/bash/",
]
PROSE = [
    "Please select the blue one, not the red one.",
    "The union of both sets is what we want in the final report.",
    "Drop me a line when you get a chance!",
    "I'd rather not; it's 1 or 2 days late at most.",
    "We need to update the table in the living room before Friday.",
    "Can you delete my old account? I created a new one by mistake.",
    "Insert the tab into slot A, then fold along the dotted line.",
    "The union leaders will select a delegate from the members.",
    "Exec summary: revenue is up 12% and costs are down 3%.",
    "If x > 5 and y < 10 then the result is true, otherwise false.",
    "Mix 1 cup flour & 2 eggs; whisk until smooth (about 2-3 minutes).",
    "Meeting notes -- action items: 1) review budget 2) hire designer",
    "Is it 'select' or 'choose'? The style guide says \"select\".",
    "Don't forget: the sale ends at midnight -- use code SPRING24.",
    'She said "or else" and walked out; we all laughed.',
    "Rock & roll never dies; neither does jazz.",
    "1 + 1 = 2, and 2 * 3 = 6. Simple math for the kids' worksheet.",
    "Price: $25.00 (was $40) - limited time only!",
    "Our café's menu: crème brûlée, piña colada, jalapeño poppers.",
    "Where's the 'Drop' button? I can't find it on the settings page.",
    "The script for the school play is due tomorrow.",
    "We ordered from the union café; the select menu was great.",
    "Our Q3 OKR: grow weekly actives by 10% or more.",
    "Table for 4 at 7pm, please; one guest is in a wheelchair.",
    "The alert went off at 3am again -- can you check the sensor?",
    "Use the <Enter> key to confirm, or press Esc to cancel.",
    "Hi team, the deploy is done. Let me know if anything looks off :)",
    "Great product!!! 5/5 would buy again <3",
    "What does 'or 1' mean in your docs? Is it a typo?",
    "He said the password reset link expired after 24h.",
    "Item #42 arrived damaged; please send a replacement.",
    "Shipping to: c/o Mary O'Brien, Apt. 3B",
    "The function returns null when the user isn't found.",
    "I love the new dark mode! Could you add a high-contrast option too?",
    "Cats & dogs; birds | fish -- pick your favourite pet.",
    "Grep through the logs for 'timeout' and send me the lines.",
    "Echo chamber effects are real in online communities.",
    "Tip: press Ctrl+C to copy and Ctrl+V to paste.",
    "The path forward is unclear; we'll revisit next sprint.",
    "See section 3.2 (Union types) and 4.1 (Select statements) of the course.",
    "My kid's school uses a 'drop-off' and 'pick-up' system.",
    "Ranking: 1st place - Team A; 2nd place - Team B; 3rd place - Team C",
    "What's the ETA? The tracking page says 'in transit' since Monday.",
    "50% off everything & free shipping on orders over €30!",
]
SEARCHES = [
    "select all",
    "union jack flag",
    "drop shipping",
    "o'brien",
    "or 1",
    '"exact phrase" -excluded',
    "rust vs go",
    "c++ templates",
    "c# async await",
    "how to drop a table in postgres",
    "best pizza near me",
    "iphone 15 pro max",
    "size:xl color:blue",
    "price<100",
    "tag:python OR tag:rust",
    'author:"D\'Angelo"',
    "1/2 inch pipe",
    "50% cotton",
    "AT&T plans",
    "Q&A",
    "rock & roll",
    "where is my order?",
    "santa's workshop",
    "café au lait",
    "naïve bayes",
    "x=y+z",
    "100 or more",
    "'single quotes'",
    "null island",
    "select comfort mattress",
    "union pacific railroad",
    "javascript tutorial",
    "how to write a script",
    "sql join examples",
    "alert sound settings",
]
FILTERS = [
    "status eq 'active' and price lt 100",
    "name eq 'O''Brien'",
    "startswith(name,'Mc') or endswith(email,'@example.com')",
    "created_at>=2024-01-01;created_at<2024-02-01",
    "status==active;(tier==gold,tier==platinum)",
    'title:"union station" AND year:[2000 TO 2010]',
    "price:[10 TO 50] OR category:books",
    "country in ('IE','GB','FR')",
    "age gt 30 and age le 65",
    "name=like=*brien*",
    "-updated_at,name",
    "total > 100 AND status != 'cancelled'",
    "tags has 'urgent' or priority ge 2",
    "(status = open OR status = pending) AND assignee = me",
]
CODE = [
    ("python", "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"),
    (
        "python",
        "import json\n\nwith open('data.json') as fh:\n    data = json.load(fh)\nfor row in data['rows']:\n    print(row['name'])\n",  # noqa: E501
    ),
    ("python", "users = [u for u in users if u.active or u.is_admin]\nusers.sort(key=lambda u: u.name)\n"),
    ("python", "query = session.query(User).filter(User.name == name).order_by(User.id)\n"),
    (
        "javascript",
        "const total = items.reduce((sum, item) => sum + item.price, 0);\nconsole.log(`Total: ${total}`);\n",
    ),
    (
        "javascript",
        "async function load() {\n  const res = await fetch('/api/items?page=2');\n  return res.json();\n}\n",
    ),
    (
        "javascript",
        'export default function Button({ label, onClick }) {\n  return <button className="btn" onClick={onClick}>{label}</button>;\n}\n',  # noqa: E501
    ),
    ("go", 'func main() {\n\tfmt.Println("hello, world")\n\tfor i := 0; i < 3; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n'),
    (
        "rust",
        'fn main() {\n    let v: Vec<i32> = (1..=10).filter(|x| x % 2 == 0).collect();\n    println!("{:?}", v);\n}\n',
    ),
    ("sql", "SELECT name, email FROM customers WHERE country = 'IE' ORDER BY name;"),
    (
        "sql",
        "SELECT o.id, SUM(i.qty) AS items\nFROM orders o JOIN order_items i ON i.order_id = o.id\nGROUP BY o.id\nHAVING SUM(i.qty) > 5;",  # noqa: E501
    ),
    ("sql", "CREATE INDEX idx_orders_created ON orders (created_at);"),
    ("yaml", 'services:\n  web:\n    image: nginx:1.25\n    ports:\n      - "8080:80"\n'),
    ("json", '{\n  "name": "demo",\n  "version": "1.0.0",\n  "private": true\n}\n'),
    ("css", ".card { display: flex; gap: 8px; }\n.card > h2 { font-weight: 600; }\n"),
    (
        "java",
        'public class Hello {\n  public static void main(String[] args) {\n    System.out.println("Hello");\n  }\n}\n',
    ),
    ("c", '#include <stdio.h>\n\nint main(void) {\n    printf("%d\\n", 42);\n    return 0;\n}\n'),
    ("ruby", "users.select { |u| u.active? }.map(&:email).each { |e| puts e }\n"),
    (
        "markdown",
        "# Release notes\n\n- Fixed the *select* dropdown on Safari\n- Added `union` support to the query builder\n\nSee [the docs](https://example.com/docs) for more.\n",  # noqa: E501
    ),
    ("markdown", "## Setup\n\n```bash\npip install requests\n```\n\n> Note: Python 3.11 or newer is required.\n"),
    ("text", "TODO:\n- [ ] write tests\n- [x] fix login bug\n- [ ] drop support for IE11\n"),
]
#: Support messages, one line each, in several languages. Many lines start with a word that
#: is also a command name ("Id", "Cat", "Type", "Ping", "Su", "Rev"), as real messages do.
SUPPORT_LINES = [
    "I'd like to change the delivery address on order {n}.",
    "Id like a refund for the second item, it arrived broken.",
    "ID {n} is the one that never arrived.",
    "Cat food was missing from the box (the 2 kg bag).",
    "Type of issue: billing / invoice",
    "Find attached a photo of the damage.",
    "More details below, sorry for the long message!",
    "Less urgent: the invoice shows the wrong VAT number.",
    "Head office address is on the invoice; please use it.",
    "Ping me when it ships, please :)",
    "Sleep mode turns on after 5 minutes - can I change that?",
    "Echo Dot stopped pairing after the update.",
    "Touch screen is unresponsive since Tuesday.",
    "Rev 2 of the board has the same issue as rev 1.",
    "Set up failed at step 3 (error 0x80070005).",
    "Time out errors every evening around 9pm; the app says 'try again'.",
    "Su pedido llegó incompleto: falta una caja.",
    "Id do pedido: {n} - obrigado!",
    "Je voudrais changer l'adresse de livraison, s'il vous plaît.",
    "Ich möchte meine Bestellung {n} stornieren.",
    "Vorrei cambiare l'indirizzo di consegna dell'ordine {n}.",
    "Chciałbym zwrócić produkt, jest uszkodzony.",
    "注文番号{n}の配送先を変更したいです。",
    "我想修改订单{n}的收货地址。",
    "Ba mhaith liom an seoladh a athrú, le do thoil.",
    "Hoe kan ik mijn wachtwoord wijzigen?",
    "Kann ich die Rechnung als PDF bekommen? Danke & Grüße",
    "Ps: the tracking link in the e-mail goes to a 404 page.",
    "Nc state sales tax was charged twice.",
    "Dig deeper please, this is the third time I write.",
    "Who am I talking to? I'd rather speak to a person.",
]
GREETINGS = ["Hi,", "Hello team,", "Bonjour,", "Hallo,", "Hola,", "Olá,", "Ciao,", "Dia dhuit,", "Good morning,", "Hey"]
SIGN_OFFS = ["Thanks,\n{name}", "Merci d'avance,\n{name}", "Danke,\n{name}", "Saludos,\n{name}", "Cheers", "-- {name}"]
#: GraphQL documents as clients send them: multi-line, fields on their own lines.
GRAPHQL_DOCS = [
    "query Order($id: ID!) {{\n  order(id: $id) {{\n    id\n    status\n    total\n    items {{\n      id\n      sku\n      qty\n    }}\n  }}\n}}",  # noqa: E501
    "fragment UserParts on User {{\n  id\n  name\n  email\n}}\n\nquery Me {{\n  me {{\n    ...UserParts\n    orders(first: {n}) {{ id }}\n  }}\n}}",  # noqa: E501
    "mutation Rename($id: ID!, $name: String!) {{\n  renameProject(id: $id, name: $name) {{\n    id\n    name\n    updatedAt\n  }}\n}}",  # noqa: E501
    "query Search($q: String!) {{\n  search(query: $q, first: {n}) {{\n    edges {{\n      node {{\n        id\n        type\n        title\n      }}\n    }}\n  }}\n}}",  # noqa: E501
    "{{\n  repository(owner: \"octocat\", name: \"hello-world\") {{\n    id\n    issues(last: {n}, states: OPEN) {{\n      nodes {{ id title }}\n    }}\n  }}\n}}",  # noqa: E501
    "subscription {{\n  orderUpdated {{\n    id\n    status\n    more\n  }}\n}}",
]
#: Markdown articles: headings, links, lists, inline code, fenced code of several languages.
MARKDOWN_PARTS = [
    "# {title}\n\nThis guide shows how to set up the client in a few minutes.",
    "## Install\n\n```sh\npip install requests\n```",
    "## Install\n\n```bash\nnpm install --save left-pad\n```\n\nor with yarn: `yarn add left-pad`.",
    "## Configure\n\nSet `API_URL` in your `.env` file, then run `make dev`.",
    "See [the docs](https://docs.example.com/guide?lang=en#setup) and [issue {n}](https://github.com/example/app/issues/{n}).",
    "- select the project\n- click *Settings*\n- or use the API: `GET /v1/projects/{n}`",
    "> **Note:** versions before 2.0 used `--legacy` instead.",
    "```python\nimport json\n\nwith open('config.json') as fh:\n    config = json.load(fh)\nprint(config['name'])\n```",
    "```js\nconst res = await fetch(`/api/items?page=${{page}}`);\nconst items = await res.json();\n```",
    "| Field | Type | Notes |\n|---|---|---|\n| name | string | required |\n| size | int | 1 to 10 |",
    "1. Download the installer\n2. Run it\n3. Restart your machine",
    "Drop us a line if anything is unclear; we answer within a day.",
]


UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",  # noqa: E501
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",  # noqa: E501
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "curl/8.5.0",
    "axios/1.6.8",
    "Go-http-client/1.1",
    "MyShopApp/3.2.1 (iOS 17.4; iPhone15,2)",
    "PostmanRuntime/7.37.0",
    "Dart/3.3 (dart:io)",
]
LANGS = ["en-US,en;q=0.9", "fr-FR,fr;q=0.8,en;q=0.5", "de-DE", "es-ES,es;q=0.9", "ga-IE,en-IE;q=0.8"]


class Gen:
    """Random building blocks, all from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def pick(self, seq: list[str]) -> str:
        return self.r.choice(seq)

    def pick_code(self) -> tuple[str, str]:
        return self.r.choice(CODE)

    def name(self) -> str:
        return f"{self.pick(FIRST)} {self.pick(LAST)}"

    def email(self) -> str:
        local = self.pick(FIRST).lower().replace("'", "").replace(" ", "")
        local = "".join(c for c in local if c.isascii() and (c.isalnum() or c in ".-"))
        tag = self.r.choice(["", "", "+news", "+shop", "+2024", ".work"])
        return f"{local or 'user'}{self.r.randint(1, 999)}{tag}@{self.pick(DOMAINS)}"

    def hexid(self, n: int = 32) -> str:
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def uuid(self) -> str:
        h = self.hexid()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def prose(self, n: int = 2) -> str:
        return " ".join(self.pick(PROSE) for _ in range(self.r.randint(1, n)))

    def jwt(self) -> str:
        def b64(obj: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        head = b64({"alg": "RS256", "typ": "JWT", "kid": self.hexid(8)})
        body = b64({"sub": self.uuid(), "name": self.name(), "iat": 1714000000 + self.r.randint(0, 10**6)})
        sig = "".join(self.r.choice(string.ascii_letters + string.digits + "-_") for _ in range(86))
        return f"{head}.{body}.{sig}"

    def headers(self, content_type: str | None = None) -> list[list[str]]:
        h = [["Host", "api.example.com"], ["User-Agent", self.pick(UAS)], ["Accept", "application/json"]]
        if self.r.random() < 0.6:
            h.append(["Authorization", f"Bearer {self.jwt()}"])
        if self.r.random() < 0.5:
            h.append(["Accept-Language", self.pick(LANGS)])
        if self.r.random() < 0.4:
            h.append(["X-Request-Id", self.uuid()])
        if self.r.random() < 0.3:
            h.append(["Referer", self.pick(PUBLIC_URLS)])
        if self.r.random() < 0.3:
            h.append(["Cookie", f"session={self.hexid(40)}; theme=dark; consent=analytics%3Dno%26ads%3Dno"])
        if self.r.random() < 0.2:
            h.append(["X-Forwarded-For", f"203.0.113.{self.r.randint(1, 254)}"])
        if content_type:
            h.append(["Content-Type", content_type])
        return h


Request = dict[str, object]


def _json(g: Gen, method: str, path: str, doc: object, category: str) -> Request:
    return {
        "method": method,
        "path": path,
        "headers": g.headers("application/json"),
        "body": json.dumps(doc, ensure_ascii=g.r.random() < 0.3),
        "category": category,
        "expect_block": False,
    }


def _get(g: Gen, path: str, params: list[tuple[str, str]], category: str) -> Request:
    if not params:
        query = ""
    elif g.r.random() < 0.5:
        query = urlencode(params, quote_via=quote)  # spaces as %20
    else:
        query = urlencode(params)  # spaces as +
    return {
        "method": "GET",
        "path": path + ("?" + query if query else ""),
        "headers": g.headers(),
        "body": None,
        "category": category,
        "expect_block": False,
    }


def user_signup(g: Gen) -> Request:
    doc = {
        "name": g.name(),
        "email": g.email(),
        "password": "".join(g.r.choice(string.printable[:94]) for _ in range(14)),
        "address": {
            "street": f"{g.r.randint(1, 300)} {g.pick(STREETS)}",
            "city": g.pick(CITIES),
            "postcode": f"{g.r.randint(10000, 99999)}",
            "country": g.pick(COUNTRIES),
        },
        "phone": f"+353 {g.r.randint(80, 89)} {g.r.randint(100, 999)} {g.r.randint(1000, 9999)}",
        "marketing_opt_in": g.r.random() < 0.5,
        "bio": g.prose(2),
    }
    return _json(g, "POST", "/api/v1/users", doc, "json-user")


def order(g: Gen) -> Request:
    doc = {
        "customer_id": g.uuid(),
        "items": [
            {"sku": f"SKU-{g.r.randint(1000, 9999)}", "qty": g.r.randint(1, 5), "note": g.pick(PROSE)}
            for _ in range(g.r.randint(1, 4))
        ],
        "shipping": {
            "name": g.name(),
            "line1": f"{g.r.randint(1, 99)} {g.pick(STREETS)}",
            "city": g.pick(CITIES),
            "country": g.pick(COUNTRIES),
        },
        "coupon": g.r.choice(["", "SPRING24", "WELCOME10", "VIP-2024"]),
        "gift_message": g.prose(1),
    }
    return _json(g, "POST", "/api/v1/orders", doc, "json-order")


def comment(g: Gen) -> Request:
    doc = {
        "post_id": g.r.randint(1, 10**6),
        "author": g.name(),
        "body": g.prose(4),
        "reply_to": g.r.choice([None, g.r.randint(1, 10**6)]),
    }
    return _json(g, "POST", f"/api/v1/posts/{g.r.randint(1, 99999)}/comments", doc, "json-comment")


def paste(g: Gen) -> Request:
    lang, code = g.pick_code()
    doc = {
        "title": g.r.choice(["snippet", "example", f"{lang} helper", "notes", "bug repro"]),
        "language": lang,
        "content": code,
        "visibility": g.r.choice(["public", "unlisted", "private"]),
    }
    return _json(g, "POST", "/api/v1/pastes", doc, f"paste-{lang}")


def bookmark(g: Gen) -> Request:
    doc = {
        "url": g.pick(PUBLIC_URLS),
        "title": g.prose(1)[:60],
        "tags": g.r.sample(["sql", "python", "news", "video", "docs", "shopping"], 2),
    }
    return _json(g, "POST", "/api/v1/bookmarks", doc, "json-bookmark")


def search(g: Gen) -> Request:
    params = [
        ("q", g.pick(SEARCHES)),
        ("page", str(g.r.randint(1, 20))),
        ("sort", g.r.choice(["relevance", "-created_at", "price,asc"])),
    ]
    return _get(g, "/api/v1/search", params, "query-search")


def filtered_list(g: Gen) -> Request:
    style = g.r.choice(["$filter", "filter", "q", "where"])
    params = [(style, g.pick(FILTERS)), ("limit", str(g.r.choice([10, 25, 50, 100])))]
    if g.r.random() < 0.4:
        params.append(("fields", "id,name,email,created_at"))
    return _get(g, g.r.choice(["/api/v1/customers", "/odata/Products", "/api/v1/issues"]), params, "query-filter")


def item_lookup(g: Gen) -> Request:
    path = g.r.choice(
        [
            f"/api/v1/users/{g.uuid()}",
            f"/api/v1/orders/{g.r.randint(1, 10**7)}/items",
            f"/api/v1/files/{quote(g.r.choice(['report (final).pdf', 'O Brien CV.docx', 'notes-2024-05.md', 'photo 1.jpg']))}",  # noqa: E501
            f"/api/v2/products/{g.r.randint(1, 99999)}/reviews",
            f"/static/js/app.{g.hexid(8)}.js",
            f"/api/v1/cities/{quote(g.pick(CITIES))}/weather",
        ]
    )
    return _get(g, path, [], "path-lookup")


def contact_form(g: Gen) -> Request:
    fields = {
        "name": g.name(),
        "email": g.email(),
        "subject": g.pick(PROSE)[:50],
        "message": g.prose(3),
        "newsletter": g.r.choice(["on", "off"]),
    }
    return {
        "method": "POST",
        "path": "/contact",
        "headers": g.headers("application/x-www-form-urlencoded"),
        "body": urlencode(fields),
        "category": "form-contact",
        "expect_block": False,
    }


def upload(g: Gen) -> Request:
    boundary = "----WebKitFormBoundary" + g.hexid(16)
    fname = g.r.choice(["report (final).pdf", "O'Brien CV.docx", "notes.md", "data.csv", "photo 1.jpg", "résumé.pdf"])
    content = g.r.choice(["name,email\nMary O'Brien,mary@example.com\n", g.prose(2), "%PDF-1.7 (binary omitted)"])
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="description"\r\n\r\n{g.prose(1)}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{fname}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
    )
    return {
        "method": "POST",
        "path": "/api/v1/uploads",
        "headers": g.headers(f"multipart/form-data; boundary={boundary}"),
        "body": body,
        "category": "multipart-upload",
        "expect_block": False,
    }


def graphql(g: Gen) -> Request:
    q = g.r.choice(
        [
            "query GetUser($id: ID!) { user(id: $id) { id name email orders(first: 5) { id total } } }",
            "mutation AddComment($input: CommentInput!) { addComment(input: $input) { id body } }",
            'query { products(filter: {price_lt: 100, name_contains: "union"}) { id name price } }',
        ]
    )
    doc = {"query": q, "variables": {"id": g.uuid(), "input": {"body": g.prose(1)}}}
    return _json(g, "POST", "/graphql", doc, "json-graphql")


def webhook(g: Gen) -> Request:
    doc = {
        "event": g.r.choice(["invoice.paid", "customer.updated", "charge.refunded"]),
        "data": {
            "object": {
                "id": "ch_" + g.hexid(24),
                "amount": g.r.randint(100, 99999),
                "currency": "eur",
                "description": g.prose(1),
                "metadata": {"order": str(g.r.randint(1, 10**6)), "note": g.pick(PROSE)},
                "receipt_url": g.pick(PUBLIC_URLS),
            }
        },
        "created": 1714000000 + g.r.randint(0, 10**6),
    }
    return _json(g, "POST", "/webhooks/payments", doc, "json-webhook")


def support_message(g: Gen) -> Request:
    lines = [g.pick(GREETINGS)]
    lines += [g.pick(SUPPORT_LINES).format(n=g.r.randint(1000, 99999)) for _ in range(g.r.randint(1, 4))]
    lines.append(g.pick(SIGN_OFFS).format(name=g.name()))
    doc = {
        "subject": g.pick(SUPPORT_LINES).format(n=g.r.randint(1000, 99999))[:60],
        "message": "\n".join(lines),
        "email": g.email(),
        "order_id": str(g.r.randint(1000, 99999)),
    }
    if g.r.random() < 0.3:
        fields = {"name": g.name(), "email": g.email(), "message": doc["message"]}
        return {
            "method": "POST",
            "path": "/support/tickets",
            "headers": g.headers("application/x-www-form-urlencoded"),
            "body": urlencode(fields),
            "category": "form-support",
            "expect_block": False,
        }
    return _json(g, "POST", "/api/v1/support/tickets", doc, "json-support")


def graphql_document(g: Gen) -> Request:
    query = g.pick(GRAPHQL_DOCS).format(n=g.r.randint(1, 50))
    if g.r.random() < 0.3:
        return {
            "method": "POST",
            "path": "/graphql",
            "headers": g.headers("application/graphql"),
            "body": query,
            "category": "graphql-document",
            "expect_block": False,
        }
    doc = {"query": query, "variables": {"id": g.uuid(), "q": g.pick(SEARCHES), "name": g.prose(1)[:40]}}
    return _json(g, "POST", "/graphql", doc, "json-graphql-multiline")


def article(g: Gen) -> Request:
    parts = [MARKDOWN_PARTS[0], *g.r.sample(MARKDOWN_PARTS[1:], g.r.randint(2, 5))]
    body = "\n\n".join(parts).format(title=g.prose(1)[:50].rstrip("."), n=g.r.randint(1, 9999))
    doc = {"title": g.prose(1)[:60], "body_markdown": body, "tags": g.r.sample(["howto", "api", "python", "js"], 2)}
    method = g.r.choice(["POST", "PUT", "PATCH"])
    return _json(g, method, f"/api/v1/articles/{g.r.randint(1, 9999)}", doc, "json-article")


KINDS: list[tuple[Callable[[Gen], Request], int]] = [
    (user_signup, 12),
    (order, 12),
    (comment, 12),
    (paste, 6),
    (bookmark, 6),
    (search, 14),
    (filtered_list, 10),
    (item_lookup, 10),
    (contact_form, 6),
    (upload, 4),
    (graphql, 4),
    (webhook, 4),
    (support_message, 8),
    (graphql_document, 6),
    (article, 6),
]


#: SOAP stacks' Content-Types: quoted parameters, MTOM's multipart/related with the
#: boundaries Java and .NET stacks generate ("----=_Part_...", "uuid:...", "MIMEBoundary_...").
SOAP_TYPES = [
    'multipart/related; type="application/xop+xml"; boundary="----=_Part_{n}_{m}.{t}"; start="<root.message@cxf.apache.org>"; start-info="text/xml"',  # noqa: E501
    'multipart/related; type="application/xop+xml"; start="<rootpart@soapui.org>"; start-info="text/xml"; boundary="----=_Part_{n}_{m}.{t}"',  # noqa: E501
    'multipart/related; type="application/xop+xml"; boundary="uuid:{u}"; start="<root.message@cxf.apache.org>"; start-info="application/soap+xml"; action="urn:example:orders:Upload"',  # noqa: E501
    'multipart/related; boundary="MIMEBoundary_{h}"; type="application/xop+xml"; start="<0.{h}@apache.org>"; start-info="text/xml"',  # noqa: E501
    'application/soap+xml; charset=utf-8; action="http://tempuri.org/IOrderService/GetOrder"',
    'text/xml; charset="utf-8"',
    "text/xml;charset=UTF-8",
]
SOAP_ACTIONS = ['"http://tempuri.org/IOrderService/GetOrder"', '"urn:example:orders#Create"', '""', "urn:Lookup"]
#: Lines of support messages that quote a command, its help text or its error: the command
#: is inside the message, never the whole value. (A download URL after curl or wget, and a
#: command in backticks, are still refused in free text: see docs/benchmarks.md.)
SHELL_HELP_LINES = [
    "I ran `tar -xzf backup.tar.gz -C /opt/app` and it says 'Cannot open: Permission denied'.",
    "Output of ls -la /var/log/app:\ntotal 12\ndrwxr-xr-x 2 app app 4096 Dec  1 09:14 .\n-rw-r--r-- 1 app app  812 Dec  1 09:14 app.log",  # noqa: E501
    "Usage: backup [OPTIONS] SOURCE DEST\n  -v, --verbose    explain what is being done\n  -n, --dry-run    show what would be copied",  # noqa: E501
    "After sudo systemctl restart app the service stays in 'activating' for minutes.",
    "kubectl get pods shows CrashLoopBackOff for the worker pod since the upgrade.",
    "docker compose up fails with: port 5432 is already allocated",
    "When I type find . -name '*.log' -mtime +7 on the box it finds nothing, but the logs are there.",
    "grep: /etc/app/conf.d/*.conf: No such file or directory",
    "On Windows, ipconfig /all shows the adapter, but ping 10.0.0.1 times out.",
    "pip install fails: ERROR: Could not find a version that satisfies the requirement app-sdk==2.1",
    "My cron line is: */5 * * * * /usr/local/bin/sync.sh >> /var/log/sync.log 2>&1 - is that right?",
]
#: SQL in documentation and tickets: catalogue tables and functions named in prose. (A whole
#: query of the catalogue is still refused in free text: see docs/benchmarks.md.)
SQL_DOC_LINES = [
    "In SQL Server the same is in sys.tables; on Oracle, look at all_tables or user_tables instead.",
    "Use pg_stat_activity to find long-running queries and pg_cancel_backend(pid) to stop one.",
    "The migration adds an index on orders(created_at); run ANALYZE afterwards.",
    "Why does COUNT(*) on a 10M row table take 4 seconds in MySQL 8 but 0.2 in Postgres?",
    "Our DBA says tempdb grows to 40 GB every night during the ETL job.",
    "The report joins customers and orders on customer_id and groups by country.",
    "Version: PostgreSQL 16.2; SHOW server_version; gives the same.",
]


def soap_mtom(g: Gen) -> Request:
    """A SOAP call as Java and .NET stacks send it (MTOM attachment or plain envelope)."""
    ctype = g.pick(SOAP_TYPES).format(
        n=g.r.randint(0, 99), m=g.r.randint(10**8, 10**10), t=1733000000000 + g.r.randint(0, 10**9),
        u=g.uuid(), h=g.hexid(24),
    )
    envelope = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<GetOrder xmlns="http://tempuri.org/"><orderId>{g.r.randint(1, 10**6)}</orderId>'
        f"<note>{g.pick(PROSE).replace('&', '&amp;').replace('<', '&lt;')}</note>"
        "</GetOrder></soap:Body></soap:Envelope>"
    )
    boundary = None
    for piece in ctype.split(";"):
        key, _, val = piece.strip().partition("=")
        if key == "boundary":
            boundary = val.strip('"')
    if boundary:
        body = (
            f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"text/xml\"\r\n"
            f"Content-Transfer-Encoding: 8bit\r\nContent-ID: <root.message@cxf.apache.org>\r\n\r\n{envelope}\r\n"
            f"--{boundary}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{g.uuid()}-1@cxf.apache.org>\r\n\r\n%PDF-1.7 (binary omitted)\r\n--{boundary}--\r\n"
        )
    else:
        body = envelope
    headers = g.headers(ctype)
    if g.r.random() < 0.6:
        headers.append(["SOAPAction", g.pick(SOAP_ACTIONS)])
    return {
        "method": "POST",
        "path": g.r.choice(["/services/OrderService", "/ws/orders", "/OrderService.svc"]),
        "headers": headers,
        "body": body,
        "category": "soap-mtom",
        "expect_block": False,
    }


def empty_headers(g: Gen) -> Request:
    """A request from a client library that sends empty headers (Content-Type on a GET or a
    DELETE, an empty Accept or Cookie) with no body."""
    headers = g.headers()
    for name in g.r.sample(["Content-Type", "Accept-Encoding", "X-Requested-With", "Cookie", "If-None-Match"], 2):
        headers.append([name, ""])
    method = g.r.choice(["GET", "GET", "DELETE", "HEAD"])
    path = g.r.choice([f"/api/v1/orders/{g.r.randint(1, 10**6)}", f"/api/v1/users/{g.uuid()}", "/api/v1/health"])
    return {"method": method, "path": path, "headers": headers, "body": None, "category": "empty-headers",
            "expect_block": False}


def help_message(g: Gen) -> Request:
    """A support message quoting a command, its help text or its error."""
    lines = [g.pick(GREETINGS), *g.r.sample(SHELL_HELP_LINES, g.r.randint(1, 2))]
    lines.append(g.pick(SIGN_OFFS).format(name=g.name()))
    doc = {"subject": g.pick(SUPPORT_LINES).format(n=g.r.randint(1000, 99999))[:60], "message": "\n".join(lines),
           "email": g.email()}
    return _json(g, "POST", "/api/v1/support/tickets", doc, "json-support-shell")


def sql_docs(g: Gen) -> Request:
    """Documentation, a knowledge-base answer or a ticket that talks about SQL."""
    doc = {"title": g.pick(SQL_DOC_LINES)[:60], "body": " ".join(g.r.sample(SQL_DOC_LINES, g.r.randint(1, 3)))}
    return _json(g, g.r.choice(["POST", "PUT"]), f"/api/v1/kb/articles/{g.r.randint(1, 9999)}", doc, "json-sql-docs")


#: The sixth round's kinds (issue 19): generated after the first ``--count`` lines from their
#: own seed, so that the lines before them stay as they were.
EXTRA_KINDS: list[tuple[Callable[[Gen], Request], int]] = [
    (soap_mtom, 3),
    (empty_headers, 3),
    (help_message, 2),
    (sql_docs, 2),
]


#: Reference pages that name the browser's objects and their members: a manual's, a wiki's, a
#: learning site's paths (the seventh round's kinds).
DOC_OBJECTS = ["document", "window", "Document", "Window", "navigator", "location", "history", "Element",
               "HTMLElement", "localStorage", "sessionStorage", "screen", "top", "self"]
DOC_MEMBERS = ["cookie", "domain", "location", "referrer", "title", "opener", "name", "origin", "href", "hash",
               "innerHTML", "outerHTML", "textContent", "userAgent", "language", "length", "state", "readyState",
               "visibilityState", "hidden", "parent", "frames"]
DOC_PREFIXES = ["/docs/web-api", "/en-US/docs/Web/API", "/reference/dom", "/wiki", "/learn/javascript",
                "/manual/browser", "/kb/frontend", "/api/v1/docs/pages", "/guides/dom-basics"]


def doc_page(g: Gen) -> Request:
    """A GET of a manual's or a wiki's page whose path names a browser object's member
    (``/docs/web-api/document.cookie``), sometimes with a section after it and a query."""
    member = f"{g.pick(DOC_OBJECTS)}.{g.pick(DOC_MEMBERS)}"
    if g.r.random() < 0.3:
        member += "." + g.pick(["href", "length", "value", "toString", "prototype"])
    path = f"{g.pick(DOC_PREFIXES)}/{member}"
    if g.r.random() < 0.3:
        path += "/" + g.pick(["examples", "compatibility", "v2", "history", "edit", "talk"])
    params = [("lang", g.pick(["en", "de", "fr", "ja", "pt-BR"]))] if g.r.random() < 0.4 else []
    return _get(g, path, params, "doc-page")


XMP_TOOLS = ["Adobe Photoshop 25.1 (Macintosh)", "GIMP 2.10", "darktable 4.6.1", "Adobe Acrobat Pro 24.1",
             "Microsoft Word for Microsoft 365", "LibreOffice 7.6", "Affinity Photo 2", "exiftool 12.76"]
XMP_TITLES = ["Harbour at dusk", "Quarterly report Q3", "Team offsite 2024", "Invoice 4471", "Floor plan, level 2",
              "Product shot: blue kettle", "Conference badge", "Menu (autumn)", "Lighthouse, Hook Head"]


def _xmp_packet(g: Gen) -> str:
    """An XMP packet as cameras, photo editors and PDF writers embed one (the packet's
    ``id`` is the fixed value the XMP specification gives)."""
    keywords = "".join(f"<rdf:li>{w}</rdf:li>" for w in g.r.sample(["sea", "travel", "finance", "draft", "final",
                                                                       "team", "kitchen", "print", "archive"], 3))
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core {g.r.randint(4, 6)}.{g.r.randint(0, 9)}.0">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/">'
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{g.pick(XMP_TITLES)}</rdf:li></rdf:Alt></dc:title>'
        f"<dc:creator><rdf:Seq><rdf:li>{g.name()}</rdf:li></rdf:Seq></dc:creator>"
        f"<dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>"
        f"<xmp:CreatorTool>{g.pick(XMP_TOOLS)}</xmp:CreatorTool>"
        f"<xmp:CreateDate>20{g.r.randint(18, 25)}-{g.r.randint(1, 12):02d}-{g.r.randint(1, 28):02d}T"
        f"{g.r.randint(0, 23):02d}:{g.r.randint(0, 59):02d}:00+01:00</xmp:CreateDate>"
        f"<xmpMM:DocumentID>xmp.did:{g.uuid()}</xmpMM:DocumentID>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )


def asset_metadata(g: Gen) -> Request:
    """An asset or document API receiving a file's XMP metadata as a form or a JSON field."""
    packet = _xmp_packet(g)
    if g.r.random() < 0.5:
        body = urlencode([("title", g.pick(XMP_TITLES)), ("metadata", packet)])
        return {"method": "POST", "path": f"/api/v1/assets/{g.r.randint(1, 99999)}/metadata",
                "headers": g.headers("application/x-www-form-urlencoded"), "body": body,
                "category": "form-xmp-metadata", "expect_block": False}
    doc = {"asset_id": g.uuid(), "xmp": packet, "source": g.pick(["upload", "import", "scanner"])}
    return _json(g, g.r.choice(["POST", "PUT"]), "/api/v1/assets/metadata", doc, "json-xmp-metadata")


SVG_SHAPES = [
    '<circle cx="12" cy="12" r="{a}" fill="{c}"/>',
    '<rect x="{b}" y="{b}" width="{a}" height="{a}" rx="2" fill="none" stroke="{c}" stroke-width="2"/>',
    '<path d="M{b} {a}l{b} -{b}l{a} {a}z" fill="{c}"/>',
    '<polyline points="2,{a} {b},{b} 22,{a}" fill="none" stroke="{c}" stroke-linecap="round"/>',
    '<line x1="{b}" y1="{b}" x2="{a}" y2="{a}" stroke="{c}"/>',
    '<g transform="translate({b} {b})"><ellipse cx="4" cy="4" rx="{b}" ry="3" fill="{c}"/></g>',
]
SVG_COLOURS = ["#2a9d8f", "#e76f51", "currentColor", "#264653", "black", "rgb(240, 180, 0)", "#fff"]


def _svg(g: Gen) -> str:
    """An icon or a logo as design tools and icon sets write one."""
    size = g.pick(["16", "24", "32", "48"])
    parts = []
    if g.r.random() < 0.4:
        parts.append('<?xml version="1.0" encoding="UTF-8"?>')
    parts.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 24 24">')
    if g.r.random() < 0.5:
        parts.append(f"<title>{g.pick(['Star', 'Home', 'Settings', 'Cart', 'Logo', 'Bell'])}</title>")
    if g.r.random() < 0.4:
        parts.append('<defs><symbol id="s"><circle cx="6" cy="6" r="5"/></symbol></defs><use href="#s" x="6" y="6"/>')
    for _ in range(g.r.randint(1, 3)):
        parts.append(g.pick(SVG_SHAPES).format(a=g.r.randint(6, 20), b=g.r.randint(1, 6), c=g.pick(SVG_COLOURS)))
    parts.append("</svg>")
    return "".join(parts)


def svg_icon(g: Gen) -> Request:
    """An icon, a logo or a badge stored by an API, sent as a form or a JSON field."""
    svg = _svg(g)
    if g.r.random() < 0.5:
        body = urlencode([("name", g.pick(["star", "home", "brand-logo", "alert-bell"])), ("image", svg)])
        return {"method": "POST", "path": "/api/v1/icons", "headers": g.headers("application/x-www-form-urlencoded"),
                "body": body, "category": "form-svg-icon", "expect_block": False}
    doc = {"name": g.pick(["star", "home", "brand-logo", "alert-bell"]), "svg": svg, "tags": ["ui", "icon"]}
    return _json(g, g.r.choice(["POST", "PUT"]), f"/api/v1/brands/{g.r.randint(1, 999)}/logo", doc, "json-svg-icon")


#: The seventh round's kinds (issue 19): generated after the sixth round's lines from their
#: own seed, so that the lines before them stay as they were.
MORE_KINDS: list[tuple[Callable[[Gen], Request], int]] = [
    (doc_page, 2),
    (asset_metadata, 1),
    (svg_icon, 1),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=7000)
    parser.add_argument("--extra", type=int, default=1000, help="requests of the sixth round's kinds, appended")
    parser.add_argument("--more", type=int, default=600, help="requests of the seventh round's kinds, appended")
    parser.add_argument("--seed", type=int, default=20240603)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "benign.jsonl")
    args = parser.parse_args()
    g = Gen(args.seed)
    makers = [m for m, w in KINDS for _ in range(w)]
    extra = Gen(args.seed + 1)
    extra_makers = [m for m, w in EXTRA_KINDS for _ in range(w)]
    with args.out.open("w", encoding="utf-8") as fh:
        for i in range(args.count):
            req = g.r.choice(makers)(g)
            req = {"id": f"benign/{i}", **req}
            fh.write(json.dumps(req, ensure_ascii=False) + "\n")
        for i in range(args.count, args.count + args.extra):
            req = extra.r.choice(extra_makers)(extra)
            req = {"id": f"benign/{i}", **req}
            fh.write(json.dumps(req, ensure_ascii=False) + "\n")
        more = Gen(args.seed + 2)
        more_makers = [m for m, w in MORE_KINDS for _ in range(w)]
        start = args.count + args.extra
        for i in range(start, start + args.more):
            req = more.r.choice(more_makers)(more)
            req = {"id": f"benign/{i}", **req}
            fh.write(json.dumps(req, ensure_ascii=False) + "\n")
    total = args.count + args.extra + args.more
    print(f"wrote {total} requests to {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
