# ruff: noqa: E501  (template lines are the output's lines; wrapping them would change the documents)
"""Jinja2 templates of the consumer documentation (kept in code so they ship with the package)."""

MARKDOWN = """\
# {{ site.title | md }}: security guide for API consumers

Base URL: `{{ site.base_url }}`

{% for note in site.notes %}
> **Note:** {{ note | md }}

{% endfor %}
All requests go through the Bastion API gateway. It forwards only the operations listed
here, checks each request before the API sees it, and answers its own refusals in one
error format (see [Errors](#errors)).

## Authentication

{% for svc in site.services %}
{% if svc.schemes %}
### {{ svc.title | md }}{% if svc.version %} ({{ svc.version | md }}){% endif %}


{% for name, scheme in svc.schemes.items() %}
#### `{{ name | md }}`: {{ scheme.kind | md }}

{% if scheme.description %}
{{ scheme.description | md }}

{% endif %}
{% if scheme.variables %}
The examples read {% for var, what in scheme.variables %}`${{ var }}` ({{ what }}){{ ", " if not loop.last }}{% endfor %}
 from the environment, so credentials never appear in your shell history.

{% endif %}
{% if scheme.setup %}
Obtain a token first:

{% set code = scheme.setup | join("\\n") %}
{{ code | fence }}sh
{{ code }}
{{ code | fence }}

{% endif %}
{% endfor %}
{% endif %}
{% endfor %}
## Operations

| Method | Path | Authentication | Scopes | Max body |
|---|---|---|---|---|
{% for op in site.operations %}
| {{ op.method }} | [`{{ op.path | mdcell }}`](#{{ op.anchor }}) | {% if op.public %}public{% elif op.auth %}{% for a in op.auth %}{{ a.schemes | join(" + ") | mdcell }}{{ " or " if not loop.last }}{% endfor %}{% else %}required (scheme not documented){% endif %}{% if op.gateway_auth == "unavailable" %} (not available yet: 401){% endif %} | {% for a in op.auth %}{{ a.scopes | join(", ") | mdcell }}{% endfor %} | {{ op.max_body_bytes | size }} |
{% endfor %}

{% for op in site.operations %}
### <a id="{{ op.anchor }}"></a>{{ op.method }} `{{ op.path | md }}`

{% if op.summary %}
{{ op.summary | md }}

{% endif %}
{% if op.description %}
{{ op.description | md }}

{% endif %}
- Route: `{{ op.route_id | md }}` (service {{ op.service | md }})
- Authentication: {% if op.public %}none (public operation){% elif op.auth %}{% for a in op.auth %}{{ a.schemes | join(" + ") | md }}{% if a.scopes %} with scopes {{ a.scopes | join(", ") | md }}{% endif %}{{ " or " if not loop.last }}{% endfor %}{% else %}required; ask the API's operators which credentials{% endif %}

{% if op.gateway_auth == "unavailable" %}
- **Not available yet:** the gateway answers every request with 401, whatever the credentials, until the API's operators configure how it authenticates this operation.

{% elif op.gateway_auth == "delegated" %}
- Credentials are checked by the API itself, not by the gateway.

{% endif %}
- Largest request body: {{ op.max_body_bytes | size }}

{{ op.curl | fence }}sh
{{ op.curl }}
{{ op.curl | fence }}

{% endfor %}
## Errors

Errors produced by the gateway are `application/problem+json` (RFC 9457) documents. Each
carries a `request_id`, also sent in the `X-Request-ID` response header: quote it when you
contact support.

```json
{{ site.problem_example }}
```

| Status | Meaning at this gateway |
|---|---|
{% for e in site.errors %}
| {{ e.status }} {{ e.title }} | {{ e.meaning | mdcell }} |
{% endfor %}

## Limits

| Limit | Value |
|---|---|
{% for name, value in site.limits.items() %}
| {{ name | mdcell }} | {{ value | mdcell }} |
{% endfor %}

## What the gateway rejects

{% for item in site.rejects %}
- {{ item | md }}
{% endfor %}

## Handling your keys and tokens

{% for item in site.key_guidance %}
- {{ item | md }}
{% endfor %}
"""

HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{ site.title }}: security guide for API consumers</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; color: #1d1f21; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .3rem; margin-top: 2.5rem; }
code, pre { font: 14px/1.4 ui-monospace, monospace; background: #f4f5f7; border-radius: 4px; }
code { padding: .1rem .3rem; } pre { padding: .8rem; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border: 1px solid #ddd; padding: .4rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f5f7; }
.desc { white-space: pre-wrap; }
.method { font-weight: 700; font-family: ui-monospace, monospace; }
.public { color: #1a7f37; } .auth { color: #9a6700; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: .6rem .8rem; border-radius: 4px; }
.op { border: 1px solid #ddd; border-radius: 6px; padding: .2rem 1rem 1rem; margin: 1rem 0; }
</style>
</head>
<body>
<h1>{{ site.title }}: security guide for API consumers</h1>
<p>Base URL: <code>{{ site.base_url }}</code></p>
{% for note in site.notes %}
<p class="note">{{ note }}</p>
{% endfor %}
<p>All requests go through the Bastion API gateway. It forwards only the operations listed here, checks each
request before the API sees it, and answers its own refusals in one error format (see <a href="#errors">Errors</a>).</p>

<h2 id="authentication">Authentication</h2>
{% for svc in site.services %}
{% if svc.schemes %}
<h3>{{ svc.title }}{% if svc.version %} ({{ svc.version }}){% endif %}</h3>
{% for name, scheme in svc.schemes.items() %}
<h4><code>{{ name }}</code>: {{ scheme.kind }}</h4>
{% if scheme.description %}<p class="desc">{{ scheme.description }}</p>{% endif %}
{% if scheme.variables %}
<p>The examples read {% for var, what in scheme.variables %}<code>${{ var }}</code> ({{ what }}){{ ", " if not loop.last }}{% endfor %}
from the environment, so credentials never appear in your shell history.</p>
{% endif %}
{% if scheme.setup %}<p>Obtain a token first:</p><pre><code>{{ scheme.setup | join("\\n") }}</code></pre>{% endif %}
{% endfor %}
{% endif %}
{% endfor %}

<h2 id="operations">Operations</h2>
<table>
<tr><th>Method</th><th>Path</th><th>Authentication</th><th>Scopes</th><th>Max body</th></tr>
{% for op in site.operations %}
<tr><td class="method">{{ op.method }}</td><td><a href="#{{ op.anchor }}"><code>{{ op.path }}</code></a></td>
<td>{% if op.public %}<span class="public">public</span>{% elif op.auth %}<span class="auth">{% for a in op.auth %}{{ a.schemes | join(" + ") }}{{ " or " if not loop.last }}{% endfor %}</span>{% else %}<span class="auth">required (scheme not documented)</span>{% endif %}{% if op.gateway_auth == "unavailable" %} <strong>(not available yet: 401)</strong>{% endif %}</td>
<td>{% for a in op.auth %}{{ a.scopes | join(", ") }}{% endfor %}</td><td>{{ op.max_body_bytes | size }}</td></tr>
{% endfor %}
</table>
{% for op in site.operations %}
<section class="op" id="{{ op.anchor }}">
<h3><span class="method">{{ op.method }}</span> <code>{{ op.path }}</code></h3>
{% if op.summary %}<p>{{ op.summary }}</p>{% endif %}
{% if op.description %}<p class="desc">{{ op.description }}</p>{% endif %}
<ul>
<li>Route: <code>{{ op.route_id }}</code> (service {{ op.service }})</li>
<li>Authentication: {% if op.public %}none (public operation){% elif op.auth %}{% for a in op.auth %}{{ a.schemes | join(" + ") }}{% if a.scopes %} with scopes {{ a.scopes | join(", ") }}{% endif %}{{ " or " if not loop.last }}{% endfor %}{% else %}required; ask the API's operators which credentials{% endif %}</li>
{% if op.gateway_auth == "unavailable" %}<li><strong>Not available yet:</strong> the gateway answers every request with 401, whatever the credentials, until the API's operators configure how it authenticates this operation.</li>
{% elif op.gateway_auth == "delegated" %}<li>Credentials are checked by the API itself, not by the gateway.</li>
{% endif %}
<li>Largest request body: {{ op.max_body_bytes | size }}</li>
</ul>
<pre><code>{{ op.curl }}</code></pre>
</section>
{% endfor %}

<h2 id="errors">Errors</h2>
<p>Errors produced by the gateway are <code>application/problem+json</code> (RFC 9457) documents. Each carries a
<code>request_id</code>, also sent in the <code>X-Request-ID</code> response header: quote it when you contact support.</p>
<pre><code>{{ site.problem_example }}</code></pre>
<table>
<tr><th>Status</th><th>Meaning at this gateway</th></tr>
{% for e in site.errors %}
<tr><td>{{ e.status }} {{ e.title }}</td><td>{{ e.meaning }}</td></tr>
{% endfor %}
</table>

<h2 id="limits">Limits</h2>
<table>
<tr><th>Limit</th><th>Value</th></tr>
{% for name, value in site.limits.items() %}
<tr><td>{{ name }}</td><td>{{ value }}</td></tr>
{% endfor %}
</table>

<h2 id="rejects">What the gateway rejects</h2>
<ul>
{% for item in site.rejects %}
<li>{{ item }}</li>
{% endfor %}
</ul>

<h2 id="keys">Handling your keys and tokens</h2>
<ul>
{% for item in site.key_guidance %}
<li>{{ item }}</li>
{% endfor %}
</ul>
</body>
</html>
"""
