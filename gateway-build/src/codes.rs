//! Every diagnostic has a stable code, so that users can look it up, CI can match on
//! it, and lints can be configured by name. `docs/diagnostics.md` is generated from
//! [`ALL`] (a test keeps the two equal); codes are never reused for another meaning.

use crate::diagnostic::Severity;

/// One kind of diagnostic.
#[derive(Debug, PartialEq, Eq)]
pub struct Code {
    /// `G0101`.
    pub id: &'static str,
    /// `unknown-upstream`; lints are configured by this name with `_` for `-`.
    pub name: &'static str,
    pub severity: Severity,
    /// Whether `[lints]` may change its level.
    pub lint: bool,
    /// One line: what is wrong.
    pub explanation: &'static str,
    /// One line: how to fix it.
    pub fix: &'static str,
}

macro_rules! codes {
    ($($konst:ident = $id:literal $name:literal $severity:ident $lint:literal: $explanation:literal; $fix:literal;)*) => {
        $(
            pub const $konst: Code = Code {
                id: $id,
                name: $name,
                severity: Severity::$severity,
                lint: $lint,
                explanation: $explanation,
                fix: $fix,
            };
        )*
        /// Every code, in order.
        pub const ALL: &[Code] = &[$($konst),*];
    };
}

codes! {
    TOML_SYNTAX = "G0001" "toml-syntax" Error false:
        "the file is not valid TOML";
        "fix the syntax at the place shown; nothing else is checked until it parses";
    UNKNOWN_KEY = "G0002" "unknown-key" Error false:
        "a key that this section does not have, often a typo";
        "use one of the keys listed in the help, or remove it";
    WRONG_TYPE = "G0003" "wrong-type" Error false:
        "a value of the wrong type, such as a string where a list is expected";
        "write the value in the type the message names";
    MISSING_KEY = "G0004" "missing-key" Error false:
        "a required key is missing";
        "add the key";
    UNKNOWN_SECTION = "G0005" "unknown-section" Error false:
        "a top-level section that gateway.toml does not have";
        "use one of `include`, `gateway`, `admin`, `listeners`, `upstreams`, `policies`, `groups`, `routes`, `tests`, `lints`";
    SECTION_SHAPE = "G0006" "section-shape" Error false:
        "a section written in the wrong form, such as `[routes]` for an array of routes";
        "write named sections as `[upstreams.NAME]` and lists as `[[routes]]`";
    INVALID_INCLUDE = "G0007" "invalid-include" Error false:
        "an `include` that cannot be used: a file that cannot be read, an included file with its own `include`, `[gateway]`, `[admin]`, `[access_log]`, `[tracing]` or `[lints]`, or a name that two files define";
        "include files of shared `[upstreams]`, `[policies]`, `[consumers]`, `[groups]`, `[listeners]` and `[[routes]]`, relative to the including file, each name defined once";

    UNKNOWN_UPSTREAM = "G0101" "unknown-upstream" Error false:
        "a route names an upstream that is not declared";
        "declare it with `[upstreams.NAME]` or fix the name";
    UNKNOWN_LISTENER = "G0102" "unknown-listener" Error false:
        "a route or test names a listener that is not declared";
        "declare it with `[listeners.NAME]` or fix the name";
    UNUSED_UPSTREAM = "G0103" "unused-upstream" Warning true:
        "an upstream that no route uses: dead configuration, or a route naming the wrong one";
        "route to it, or remove it";
    NO_LISTENER = "G0104" "no-listener" Error false:
        "the gateway has no listener and would accept no traffic";
        "add `[listeners.NAME]` with a `bind` address";
    NO_TARGETS = "G0105" "no-targets" Error false:
        "an upstream with an empty target list";
        "list at least one `http://HOST:PORT` target";
    DUPLICATE_ROUTE_NAME = "G0106" "duplicate-route-name" Error false:
        "two routes with the same `name`, so logs, metrics and route tests cannot tell them apart, or a route named `unmatched`, the metrics' name for requests no route matched";
        "give each route its own name";
    TOO_MANY_LISTENERS = "G0107" "too-many-listeners" Error false:
        "more than 64 listeners";
        "merge listeners; routes name listeners in a 64-bit set";

    PATH_NOT_ABSOLUTE = "G0201" "path-not-absolute" Error false:
        "a route path that does not start with `/`, so it can match no request";
        "start the path with `/`";
    INVALID_PATTERN = "G0202" "invalid-pattern" Error false:
        "a route path that is not a valid pattern";
        "write parameters as `{name}` (one per segment) and a catch-all as a last `{*name}`";
    DUPLICATE_ROUTE = "G0203" "duplicate-route" Error false:
        "two routes match the same requests (same listener, host, method and path, parameter names aside)";
        "remove one, or make their methods, hosts or listeners differ";
    CONFLICTING_PATTERNS = "G0204" "conflicting-patterns" Error false:
        "two path patterns the router cannot hold side by side";
        "use the same parameter at the same position, or a distinct static segment";
    SHADOWED_ROUTE = "G0205" "shadowed-route" Error false:
        "a route that can never match: routes declared before it take every request it would";
        "remove it, or narrow the earlier routes' methods, hosts or listeners";
    PARTLY_SHADOWED_ROUTE = "G0206" "partly-shadowed-route" Warning true:
        "some of a route's methods are taken by routes declared before it";
        "drop those methods from the later route, or from the earlier ones";
    UNKNOWN_METHOD = "G0207" "unknown-method" Error false:
        "a method name that is not one of the standard methods (names are case-sensitive)";
        "use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH";
    EMPTY_METHODS = "G0208" "empty-methods" Error false:
        "`methods = []` matches nothing";
        "list methods, or leave `methods` out to match every method";
    INVALID_HOST = "G0209" "invalid-host" Error false:
        "a route `host` that is not a DNS name";
        "write a host such as `api.example.com`, without scheme or port";
    NO_TARGET = "G0210" "no-target" Error false:
        "a route that says nowhere to send requests";
        "add `upstream = \"NAME\"`";
    REWRITE_WITH_STRIP_PREFIX = "G0211" "rewrite-with-strip-prefix" Error false:
        "a route with both `rewrite` and `strip_prefix`";
        "keep one: a rewrite already writes the whole path";
    STRIP_PREFIX_MISMATCH = "G0212" "strip-prefix-mismatch" Error false:
        "a `strip_prefix` that is not a whole-segment prefix of every path the route matches";
        "strip a prefix of the route's literal start that ends at a `/`";
    REWRITE_NOT_ABSOLUTE = "G0213" "rewrite-not-absolute" Error false:
        "a `rewrite` that does not start with `/`";
        "start the rewrite with `/`";
    REWRITE_UNKNOWN_PARAMETER = "G0214" "rewrite-unknown-parameter" Error false:
        "a `rewrite` uses a parameter that the route's path does not capture";
        "use a parameter of the path, or capture it in the path";
    REWRITE_SYNTAX = "G0215" "rewrite-syntax" Error false:
        "a `rewrite` with an unclosed or empty `{}`";
        "write parameters as `{name}`";

    INVALID_DURATION = "G0301" "invalid-duration" Error false:
        "not a duration, or zero";
        "write a whole number with a unit: `500ms`, `5s`, `2m`, `1h`";
    INVALID_ADDRESS = "G0302" "invalid-address" Error false:
        "not a listening address";
        "write `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`";
    INVALID_URL = "G0303" "invalid-url" Error false:
        "not a usable upstream URL";
        "write `http://HOST:PORT` with no path, query or credentials";
    INVALID_REFERENCE = "G0304" "invalid-reference" Error false:
        "a malformed `${…}` reference";
        "write `${env:NAME}`, `${env:NAME:-default}` or `${file:PATH}`";
    OUT_OF_RANGE = "G0305" "out-of-range" Error false:
        "a number outside the range the setting allows";
        "use a value in the range the message gives";
    ADDRESS_IN_USE_TWICE = "G0306" "address-in-use-twice" Error false:
        "two listeners bind the same address; the second would fail at start-up";
        "give each listener its own address or port";
    EMPTY_NAME = "G0307" "empty-name" Error false:
        "an empty name";
        "write a name";
    INVALID_SIZE = "G0308" "invalid-size" Error false:
        "not a size, or zero";
        "write a whole number with a unit: `512B`, `64KiB`, `10MiB`, `1GiB`";

    INVALID_TEST_REQUEST = "G0401" "invalid-test-request" Error false:
        "a route test whose `request` is not `METHOD /path`";
        "write it like `GET /api/users/42`";
    ROUTE_TEST_FAILED = "G0402" "route-test-failed" Error false:
        "a route test's expectation does not hold for the compiled route table";
        "fix the routes or the expectation; the message says what the request did";
    UNKNOWN_ROUTE = "G0403" "unknown-route" Error false:
        "a route test expects a route name that no route has";
        "use a route's `name`";
    INVALID_STATUS = "G0404" "invalid-status" Error false:
        "not an HTTP status code the router can answer";
        "expect 200 (routed), 400, 404 or 405, or leave `status` out";
    EMPTY_EXPECTATION = "G0405" "empty-expectation" Error false:
        "a route test that expects nothing, and so can never fail";
        "add `route`, `upstream`, `path` or `status` to `expect`";

    UNKNOWN_LINT = "G0501" "unknown-lint" Error false:
        "`[lints]` names a lint that does not exist, or sets a level other than allow, warn or deny";
        "use a lint name from docs/diagnostics.md and `allow`, `warn` or `deny`";
    PLAIN_HTTP_UPSTREAM = "G0502" "plain-http-upstream" Warning true:
        "an upstream reached over plain HTTP on a non-loopback host: traffic and credentials cross the network unencrypted";
        "reach it over a private network you trust, or allow the lint with a reason";
    DEFAULT_RESPONSE_TIMEOUT = "G0503" "default-response-timeout" Allow true:
        "an upstream relies on the default 30s response timeout";
        "set `timeouts.response` to what the upstream's latency budget really is";

    UNKNOWN_POLICY = "G0601" "unknown-policy" Error false:
        "a route, listener or group names a policy that is not declared";
        "declare it with `[policies.NAME]` or fix the name";
    POLICY_ATTACHED_TWICE = "G0602" "policy-attached-twice" Error false:
        "a policy that a route would run twice: listed twice, or listed by the route and also by its listener or group";
        "attach it in one place";
    POLICY_KIND = "G0603" "policy-kind" Error false:
        "a policy with no kind, or with several kinds at once";
        "give each policy one kind: `ip`, `client_cert`, header rules (`request_headers` and `response_headers`), `jwt`, `api_key` or `authorize`";
    INVALID_CIDR = "G0604" "invalid-cidr" Error false:
        "not an IP address or CIDR block, or a block with bits set past its prefix";
        "write `10.0.0.0/8`, `2001:db8::/32` or one address";
    CONTRADICTORY_IP_RULES = "G0605" "contradictory-ip-rules" Error false:
        "an `allow` entry that the same policy's `deny` list covers entirely, so it allows nothing";
        "remove the entry, or narrow the `deny` list";
    ROUTE_FULLY_DENIED = "G0606" "route-fully-denied" Warning true:
        "a route that no client address can reach: the IP rules it runs refuse every address together";
        "widen an `allow` list, or skip the listener's policy on this route";
    INVALID_HEADER_NAME = "G0607" "invalid-header-name" Error false:
        "a header rule names a field that is not an RFC 9110 token";
        "use letters, digits and `-` (`X-Request-Id`)";
    FORBIDDEN_HEADER = "G0608" "forbidden-header" Error false:
        "a header rule touches, or an aggregate call passes on, a field that frames the message, concerns one hop only, or that the gateway sets itself";
        "leave that field to the gateway";
    INVALID_HEADER_VALUE = "G0609" "invalid-header-value" Error false:
        "a header rule value that is not a field value (a control character) or not a valid template";
        "remove control characters; write request values as `{param.NAME}`, `{client_ip}`, `{header.NAME}`";
    HEADER_UNKNOWN_PARAMETER = "G0610" "header-unknown-parameter" Error false:
        "a header value uses a route parameter that a route running the policy does not capture";
        "capture the parameter in every route that runs the policy, or use another value";
    UNKNOWN_GROUP = "G0611" "unknown-group" Error false:
        "a route names a group that is not declared";
        "declare it with `[groups.NAME]` or fix the name";
    SKIP_NOT_INHERITED = "G0612" "skip-not-inherited" Error false:
        "`skip_policies` names a policy that the route does not get from a listener or its group";
        "remove it from `skip_policies`";
    UNUSED_POLICY = "G0613" "unused-policy" Warning true:
        "a policy that no route runs";
        "attach it to a route, listener or group, or remove it";

    INVALID_SERVER_NAME = "G0701" "invalid-server-name" Error false:
        "a TLS server name that is not a DNS name, or has a wildcard anywhere but as its whole first label";
        "write names such as `api.example.com` or `*.example.com`";
    DUPLICATE_SERVER_NAME = "G0702" "duplicate-server-name" Error false:
        "two certificates of one listener claim the same server name, so one of them is never served";
        "name each server name in one `sni` entry only";
    SECRET_IN_CONFIG = "G0703" "secret-in-config" Error false:
        "a private key, HMAC secret or API key written into gateway.toml, which would be compiled into the binary";
        "write `${file:PATH}` or `${env:NAME}` (or an API key's `sha256:` digest), so the secret is read at start-up";
    NO_CERTIFICATE = "G0704" "no-certificate" Error false:
        "a `tls` table without a certificate: no handshake could succeed";
        "add `cert` and `key`, or `[[listeners.NAME.tls.sni]]` entries";
    INVALID_TLS_SETTING = "G0705" "invalid-tls-setting" Error false:
        "a TLS setting that cannot work: not PEM, an invalid HSTS value or identity field name, a redirect on a TLS listener";
        "follow the message; README.md's reference lists every `tls` key";
    CLIENT_CERT_WITHOUT_CLIENT_AUTH = "G0707" "client-cert-without-client-auth" Error false:
        "a route requires a client certificate on a listener that asks for none, so it would refuse every request";
        "add `client_auth` to the listener's `tls`, or serve the route on another listener";
    TLS_WITHOUT_HTTPS = "G0706" "tls-without-https" Warning true:
        "an upstream `tls` table, but no `https://` target to use it";
        "make the targets `https://`, or remove the `tls` table";

    UNKNOWN_ALGORITHM = "G0801" "unknown-algorithm" Error false:
        "a JWT algorithm the gateway does not verify (`none` among them)";
        "use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA";
    KEY_ALGORITHM_MISMATCH = "G0802" "key-algorithm-mismatch" Error false:
        "JWT algorithms of different key kinds in one policy, or a key that cannot verify them (a `secret` for RS256, a public key for HS256)";
        "give HS* algorithms a `secret` and the others a `key`; declare one policy per key kind";
    INVALID_KEY_DIGEST = "G0803" "invalid-key-digest" Error false:
        "a consumer key `sha256:` digest that is not 64 hex digits";
        "write `sha256:` and the key's SHA-256 in hex (`printf %s \"$KEY\" | sha256sum`)";
    AUTHORIZATION_WITHOUT_AUTHENTICATION = "G0804" "authorization-without-authentication" Error false:
        "an `authorize` policy on a route that authenticates no one before it, so it would refuse every request";
        "attach a `jwt` or `api_key` policy before it in the route's chain";
    INVALID_AUTH_SETTING = "G0805" "invalid-auth-setting" Error false:
        "an authentication setting that cannot work: a key missing or given twice, two token places, a bad field name, a value out of range, API keys without consumers, an `any` of fewer than two authentication policies, an `ext_authz` path that is not one";
        "follow the message; README.md's reference lists every `jwt`, `api_key`, `any`, `ext_authz` and `authorize` key";
    UNAUTHENTICATED_ROUTE = "G0806" "unauthenticated-route" Allow true:
        "a route that runs no authentication policy (`jwt`, `api_key`, `any`, `ext_authz`) and is not marked `public = true`";
        "attach an authentication policy, or write `public = true` on the route";
    PLAIN_HTTP_JWKS = "G0807" "plain-http-jwks" Warning true:
        "a key set fetched over plain HTTP (allowed to loopback only), where anyone on the path could swap the keys";
        "fetch it over `https://`";

    INVALID_RATE_LIMIT = "G0901" "invalid-rate-limit" Error false:
        "a rate limit that cannot mean what it says: a rate of 0 or not `N/unit`, a burst below 1 or that takes more than a day to refill, `max_keys` out of range, an unknown scope, a `group:` whose limits differ";
        "write `rate = \"100/min\"` (units s, min, h, d) and a `burst` of at least 1; README.md's reference lists every `rate_limit` key";
    UNKNOWN_LIMIT_KEY = "G0902" "unknown-limit-key" Error false:
        "a rate-limit `key` the gateway cannot read";
        "use `client_ip`, `route`, `consumer`, `jwt.CLAIM`, `header.NAME` or `param.NAME`";
    INVALID_CONCURRENCY_LIMIT = "G0904" "invalid-concurrency-limit" Error false:
        "a concurrency limit that cannot work: `max` below 1, a queue or timeout out of range, a scope other than `route` or `global`";
        "write `concurrency = { max = 100, queue = 50, queue_timeout = \"1s\" }`; README.md's reference lists every key";
    REDUNDANT_LIMIT = "G0905" "redundant-limit" Warning true:
        "two rate limits of a route count the same key in the same buckets' scope, and one is no tighter than the other in rate and burst, so it never refuses first";
        "remove the looser limit, or key or scope them differently (per user and global, say)";
    INVALID_QUOTA = "G0906" "invalid-quota" Error false:
        "a quota that cannot work: a limit below 1, a period other than `day` or `month`, an unknown window or time zone, a time zone on a rolling window, no Redis store, a scope other than `route` or `global`";
        "write `quota = { limit = 10000, per = \"month\", time_zone = \"Europe/Berlin\", store = { redis = \"${env:REDIS_URL}\" } }`; README.md's reference lists every key";
    INVALID_AGGREGATE = "G1001" "invalid-aggregate" Error false:
        "an aggregate route that cannot work: also an `upstream`, `strip_prefix` or `rewrite`, no calls, a method that is no method, a `merge` other than `nested` or `flat`, a bound missing or out of range, a `fallback` on a required call, a field path that is no path, a `body` on a GET call, a reference to many values of an answer (`items[]`)";
        "write `[[routes.aggregate]]` tables of `key`, `upstream` and `path`; README.md's reference lists every key";
    UNKNOWN_TEMPLATE_VALUE = "G1002" "unknown-template-value" Error false:
        "a call's target or body template names a value the route does not have: a parameter its path does not capture, a call it does not make, or something other than `{param}`, `{query.NAME}` and `{KEY.FIELD}`";
        "use a parameter of the route's path, `{query.NAME}` for a query parameter, or `{KEY.FIELD}` for a value of another call's answer";
    DUPLICATE_OUTPUT_KEY = "G1003" "duplicate-output-key" Error false:
        "two calls of an aggregate route write the same member of the response: one `key` twice, the reserved `_errors`, or, with `merge = \"flat\"`, `fields` lists that share a top-level name";
        "give each call its own key, or shape the answers so that their members differ";
    CALL_CYCLE = "G1004" "call-cycle" Error false:
        "calls of an aggregate route that depend on each other's answers, directly or through other calls, so that none can be made first";
        "let one of the calls take its value from the request instead of an answer";
    INVALID_BODY_RULE = "G1006" "invalid-body-rule" Error false:
        "a route's `request_body` or `response_body` that cannot work: a field path that is no path, a `max_body` over 64MiB, a `request_body` on an aggregate route, which sends no client body on";
        "write `response_body = { fields = [\"id\", \"items[].id\"], max_body = \"1MiB\" }`; README.md's reference lists every key";
    JSON_RULE_ON_NON_JSON = "G1007" "json-rule-on-non-json" Error false:
        "a JSON rule (a body rule, or an aggregate call) on an upstream declared `json = false`";
        "remove the rule, or the upstream's `json = false` if its bodies are JSON";
    UNPROVIDED_FIELD = "G1005" "unprovided-field" Error false:
        "a call uses a value of another call's answer that the other call's rules remove: a member its `fields` do not keep, one its `deny` removes, one its `rename` renames, or one outside its `group`";
        "refer to the value as the other call's shaped answer has it, or keep it in that call's `fields`";
    ADMIN_NOT_LOOPBACK = "G1101" "admin-not-loopback" Error false:
        "the admin listener binds an address other than loopback without `expose = true`: it shows every route, the configuration's digest and every metric";
        "bind `127.0.0.1:PORT` (the default) and reach it through a tunnel, or set `expose = true` in `[admin]` on a network you control";
    EXPOSED_ADMIN = "G1102" "exposed-admin" Warning true:
        "`[admin] expose = true`: the admin listener may bind an address other than loopback";
        "keep the address off public networks, then allow the lint in `[lints]` (`exposed_admin = \"allow\"`)";
    INVALID_BUCKETS = "G1103" "invalid-buckets" Error false:
        "histogram bucket bounds that are not 1 to 30 positive numbers of seconds, each larger than the one before, up to an hour";
        "write `buckets = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5]`";
    INVALID_TRACING = "G1104" "invalid-tracing" Error false:
        "a `[tracing]` value out of range: a `sample_ratio` that is not a number from 0 to 1, or an empty `service_name`";
        "write `sample_ratio = 0.01` to record 1% of new traces (a client's sampled trace is always continued), and name the service or leave `service_name` out";
    LIMIT_KEY_UNAVAILABLE = "G0903" "limit-key-unavailable" Error false:
        "a rate limit keyed by what its route cannot provide: a claim with no token verified before it, a consumer with no API key checked before it, a parameter the route does not capture";
        "attach the authentication policy before the limit, or key it by something the route has";
}

/// The code whose lint name (`plain_http_upstream`) is `name`.
pub fn lint_by_name(name: &str) -> Option<&'static Code> {
    ALL.iter()
        .find(|c| c.lint && c.name.replace('-', "_") == name)
}

/// The lint names, for suggestions.
pub fn lint_names() -> impl Iterator<Item = String> {
    ALL.iter()
        .filter(|c| c.lint)
        .map(|c| c.name.replace('-', "_"))
}

/// `docs/diagnostics.md`, generated.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Diagnostics\n\n\
         Every diagnostic of `gateway check` and of the build has a stable code. Lints (marked\n\
         *lint*) can be set to `allow`, `warn` or `deny` in a `[lints]` table by the name shown\n\
         with `_` for `-`, as clippy's are: `[lints] plain_http_upstream = \"deny\"`.\n\n\
         This file is generated from `gateway-build/src/codes.rs`; `cargo test` fails when they\n\
         differ (`GATEWAY_BLESS=1 cargo test -p gateway-build` rewrites it).\n\n\
         | code | name | level | what is wrong | how to fix it |\n|---|---|---|---|---|\n",
    );
    for code in ALL {
        let level = match (code.severity, code.lint) {
            (Severity::Error, false) => "error",
            (Severity::Error, true) => "error (lint)",
            (Severity::Warning, false) => "warning",
            (Severity::Warning, true) => "warn (lint)",
            (Severity::Allow, _) => "allow (lint)",
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            code.id,
            code.name,
            level,
            code.explanation.replace('|', "\\|"),
            code.fix.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids and names are unique and well formed.
    #[test]
    fn codes_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.id.starts_with('G') && a.id.len() == 5, "{}", a.id);
            for b in &ALL[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.name, b.name);
            }
        }
        assert!(ALL.len() >= 30);
    }

    /// docs/diagnostics.md is the generated table.
    #[test]
    fn docs_match_the_codes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/diagnostics.md");
        let generated = markdown();
        if std::env::var_os("GATEWAY_BLESS").is_some() {
            std::fs::write(path, &generated).expect("write docs/diagnostics.md");
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == generated,
            "docs/diagnostics.md is out of date: run `GATEWAY_BLESS=1 cargo test -p gateway-build`"
        );
    }
}
