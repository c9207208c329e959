//! `envoy.filters.http.jwt_authn`: requests must carry JWTs that satisfy
//! a requirement — one provider, any or all of several, or tokens that
//! may be missing (or failed) — chosen by the first matching rule, a
//! route's `requirement_name`, or nothing (the request passes). Tokens
//! are found, checked and forwarded as Envoy's authenticator does: the
//! last token found is tried first, every token must pass, issuer, then
//! times, audiences, subject and lifetime, then the signature. A refusal
//! is 401 (403 for audiences) with jwt_verify_lib's words and a
//! `www-authenticate` challenge.

use super::remote_jwks::RemoteKeys;
use super::{Answer, Context, Decision, ResponseStep};
use crate::config::{
    JwksSource, JwtAuthnConfig, JwtPerRoute, JwtProvider, JwtRequirement, RouteMatch,
};
use crate::http::codec::percent_decode;
use crate::http::flags::ResponseFlags;
use crate::http::local_reply::LocalReply;
use crate::http::mutate::Edits;
use crate::jwt::jwks::Jwks;
use crate::jwt::{Audiences, Jwt, Status};
use crate::router::RequestView;
use crate::server::shard::Shard;
use crate::stats::{sets, Scope};
use base64::Engine;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy's clock skew when a provider sets none.
const DEFAULT_CLOCK_SKEW: u64 = 60;
/// How much of the path the challenge's realm keeps.
const MAX_REALM_PATH: usize = 256;

/// The filter, compiled.
#[derive(Debug)]
pub struct JwtAuthn {
    providers: Vec<Provider>,
    rules: Vec<(RouteMatch, Option<Requirement>)>,
    named: Vec<(String, Requirement)>,
    /// Every provider's token locations (for `allow_missing*`).
    everywhere: Extractor,
    bypass_cors_preflight: bool,
    strip_failure_response: bool,
    stats: Arc<Scope<sets::JwtAuthn>>,
}

/// A provider, compiled.
#[derive(Debug)]
struct Provider {
    name: String,
    /// Its position among the filter's providers.
    index: usize,
    config: JwtProvider,
    audiences: Audiences,
    /// Its `local_jwks` (empty with `remote_jwks`).
    jwks: Jwks,
    /// Its `remote_jwks`.
    remote: Option<RemoteKeys>,
    extractor: Extractor,
    /// Verified tokens, one cache per shard (as Envoy keeps one per
    /// worker), when `jwt_cache_config` is set.
    caches: Option<Vec<Mutex<Cache>>>,
}

/// A requirement, compiled (providers by position).
#[derive(Debug, Clone)]
enum Requirement {
    Provider(usize, Option<Audiences>),
    Any {
        children: Vec<Requirement>,
        allow_missing: bool,
        allow_missing_or_failed: bool,
    },
    All(Vec<Requirement>),
    AllowMissingOrFailed,
    AllowMissing,
    AllowAll,
}

/// Which issuers may use a token location (empty issuer: all).
#[derive(Debug, Default)]
struct Issuers {
    all: bool,
    named: HashSet<String>,
}

impl Issuers {
    fn add(&mut self, issuer: &str) {
        if issuer.is_empty() {
            self.all = true;
        } else {
            self.named.insert(issuer.to_string());
        }
    }

    fn allow(&self, issuer: &str) -> bool {
        self.all || self.named.contains(issuer)
    }
}

/// Where tokens are looked for, in Envoy's order: headers (by name and
/// prefix), then query parameters, then cookies, each sorted.
#[derive(Debug, Default)]
struct Extractor {
    headers: BTreeMap<(String, String), Issuers>,
    params: BTreeMap<String, Issuers>,
    cookies: BTreeMap<String, Issuers>,
    /// Headers a verified token sets, removed from requests first.
    sanitize: Vec<String>,
}

impl Extractor {
    fn add(&mut self, p: &JwtProvider) {
        for (name, prefix) in &p.from_headers {
            let key = (name.clone(), prefix.clone());
            self.headers.entry(key).or_default().add(&p.issuer);
        }
        for param in &p.from_params {
            self.params.entry(param.clone()).or_default().add(&p.issuer);
        }
        for cookie in &p.from_cookies {
            self.cookies
                .entry(cookie.clone())
                .or_default()
                .add(&p.issuer);
        }
        if p.from_headers.is_empty() && p.from_params.is_empty() && p.from_cookies.is_empty() {
            let key = ("authorization".to_string(), "Bearer ".to_string());
            self.headers.entry(key).or_default().add(&p.issuer);
            let param = "access_token".to_string();
            self.params.entry(param).or_default().add(&p.issuer);
        }
        if !p.forward_payload_header.is_empty() {
            self.sanitize.push(p.forward_payload_header.clone());
        }
        self.sanitize
            .extend(p.claim_to_headers.iter().map(|(h, _)| h.clone()));
    }

    /// The tokens `exchange` carries, in the order found.
    fn extract<'e>(&'e self, exchange: &Exchange) -> Vec<Location<'e>> {
        let mut found = Vec::new();
        for ((name, prefix), issuers) in &self.headers {
            let Some(value) = exchange.header(name) else {
                continue;
            };
            let token = if prefix.is_empty() {
                value
            } else {
                let Some(at) = value.find(prefix.as_str()) else {
                    continue;
                };
                token_after(&value, at + prefix.len()).to_string()
            };
            found.push(Location {
                token,
                issuers,
                header: Some(name),
                param: None,
            });
        }
        for (param, issuers) in &self.params {
            if let Some(token) = exchange.request.query_parameter(param) {
                found.push(Location {
                    token,
                    issuers,
                    header: None,
                    param: Some(param),
                });
            }
        }
        if !self.cookies.is_empty() {
            let cookies = cookies(exchange.request);
            for (cookie, issuers) in &self.cookies {
                if let Some(token) = cookies.get(cookie.as_str()) {
                    found.push(Location {
                        token: token.to_string(),
                        issuers,
                        header: None,
                        param: None,
                    });
                }
            }
        }
        found
    }
}

/// The token in a header value after its prefix: from the first
/// base64url character or dot on (Envoy 1.40 keeps the rest of the value).
fn token_after(value: &str, from: usize) -> &str {
    let rest = value.get(from..).unwrap_or("");
    let start = rest
        .find(|c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .unwrap_or(0);
    if rest[start..].is_empty() {
        value
    } else {
        &rest[start..]
    }
}

/// The request's cookies by name (the first of a name wins; quotes
/// around a value are dropped).
fn cookies<'r>(request: &'r RequestView) -> HashMap<&'r str, &'r str> {
    let mut found = HashMap::new();
    for line in request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
    {
        let Ok(text) = std::str::from_utf8(line.value) else {
            continue;
        };
        for pair in text.split(';') {
            let Some((name, value)) = pair.trim_start().split_once('=') else {
                continue;
            };
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            found.entry(name).or_insert(value);
        }
    }
    found
}

/// A token found, and where.
struct Location<'e> {
    token: String,
    issuers: &'e Issuers,
    /// The header it came from (removed unless `forward`).
    header: Option<&'e str>,
    /// The query parameter it came from (removed unless `forward`).
    param: Option<&'e str>,
}

/// Recently verified tokens: least recently used goes first when full.
#[derive(Debug)]
struct Cache {
    capacity: usize,
    max_token: usize,
    entries: HashMap<String, (Arc<Jwt>, u64)>,
    clock: u64,
}

impl Cache {
    /// A cached token still within its `exp` (Envoy's default skew).
    fn get(&mut self, token: &str, now: u64) -> Option<Arc<Jwt>> {
        self.clock += 1;
        let (jwt, used) = self.entries.get_mut(token)?;
        if jwt.check_time(now, DEFAULT_CLOCK_SKEW) == Status::JwtExpired {
            self.entries.remove(token);
            return None;
        }
        *used = self.clock;
        Some(jwt.clone())
    }

    fn put(&mut self, jwt: Arc<Jwt>, token: &str) {
        if token.len() > self.max_token {
            return;
        }
        if self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(token.to_string(), (jwt, self.clock));
    }
}

/// One request's verification: its headers as verification edits them.
/// The remote key sets this request fetched, by provider position.
pub struct Fetches<'a> {
    /// Fetched: used even when `cache_duration` is already over.
    pub done: &'a [usize],
    /// Failed: their tokens fail.
    pub failed: &'a [usize],
}

struct Exchange<'a> {
    request: &'a RequestView<'a>,
    /// The remote key sets this request fetched.
    fetches: &'a Fetches<'a>,
    /// A provider whose remote key set must be fetched before the
    /// request can be judged.
    fetch: Option<usize>,
    /// JWT cache hits and misses, counted once the request is judged.
    cache_hits: u64,
    cache_misses: u64,
    edits: Edits,
    /// Query parameters whose tokens are taken out of the path.
    dropped_params: Vec<String>,
    /// A provider that clears the route cache added a claim header.
    clear_route_cache: bool,
    now: u64,
    shard: &'a Shard,
}

impl Exchange<'_> {
    /// A header's lines (joined with `,`) after the edits so far.
    fn header(&self, name: &str) -> Option<String> {
        let mut values: Vec<Cow<str>> = Vec::new();
        if self.edits.keeps(name) {
            values.extend(
                self.request
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value)),
            );
        }
        values.extend(
            self.edits
                .added
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v)),
        );
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// A claim as a header value, as Envoy writes one: strings as they are,
/// whole numbers as integers, other numbers as C's `%f`, booleans, and
/// objects or lists as base64 JSON; None for anything else or empty.
fn claim_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let v = n.as_f64()?;
            if v >= 0.0 && v < u64::MAX as f64 && v.fract() == 0.0 {
                (v as u64).to_string()
            } else {
                format!("{v:.6}")
            }
        }
        Value::Object(_) | Value::Array(_) => {
            base64::engine::general_purpose::STANDARD.encode(value.to_string())
        }
        Value::Null => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn compile_requirement(r: &JwtRequirement, providers: &[Provider]) -> Requirement {
    let position = |name: &str| providers.iter().position(|p| p.name == name);
    match r {
        JwtRequirement::Provider(name, audiences) => Requirement::Provider(
            position(name).unwrap_or_default(),
            audiences.as_ref().map(Audiences::new),
        ),
        JwtRequirement::Any(list) => {
            let mut children = Vec::new();
            let (mut allow_missing, mut allow_missing_or_failed) = (false, false);
            for r in list {
                match r {
                    JwtRequirement::AllowMissing => allow_missing = true,
                    JwtRequirement::AllowMissingOrFailed => allow_missing_or_failed = true,
                    other => children.push(compile_requirement(other, providers)),
                }
            }
            if children.is_empty() {
                children.push(if allow_missing_or_failed {
                    Requirement::AllowMissingOrFailed
                } else {
                    Requirement::AllowMissing
                });
            }
            Requirement::Any {
                children,
                allow_missing,
                allow_missing_or_failed,
            }
        }
        JwtRequirement::All(list) => Requirement::All(
            list.iter()
                .map(|r| compile_requirement(r, providers))
                .collect(),
        ),
        JwtRequirement::AllowMissingOrFailed => Requirement::AllowMissingOrFailed,
        JwtRequirement::AllowMissing => Requirement::AllowMissing,
        JwtRequirement::AllowAll => Requirement::AllowAll,
    }
}

/// How one authentication runs: for a named provider (and its audience
/// override), or for all providers with missing or failed tokens allowed.
struct Attempt<'a> {
    provider: Option<&'a Provider>,
    audiences: Option<&'a Audiences>,
    allow_failed: bool,
    allow_missing: bool,
}

impl JwtAuthn {
    /// Compiles the filter, its stats under
    /// `http.<stat_prefix>.jwt_authn.<config's stat_prefix>.`.
    pub fn compile(config: &JwtAuthnConfig, cx: &Context) -> JwtAuthn {
        let (store, stat_prefix) = (cx.store, cx.stat_prefix);
        let shards = store.shards() + 1;
        let providers: Vec<Provider> = config
            .providers
            .iter()
            .enumerate()
            .map(|(index, (name, p))| {
                let mut extractor = Extractor::default();
                extractor.add(p);
                let (jwks, remote) = match &p.keys {
                    // Decoding refused a key set that does not parse.
                    JwksSource::Local(text) => (Jwks::parse(text).unwrap_or_default(), None),
                    JwksSource::Remote(r) => {
                        (Jwks::default(), Some(RemoteKeys::compile(r, cx, shards)))
                    }
                };
                Provider {
                    name: name.clone(),
                    index,
                    audiences: Audiences::new(&p.audiences),
                    jwks,
                    remote,
                    extractor,
                    caches: p.jwt_cache.map(|(capacity, max_token)| {
                        (0..shards)
                            .map(|_| {
                                Mutex::new(Cache {
                                    capacity,
                                    max_token,
                                    entries: HashMap::new(),
                                    clock: 0,
                                })
                            })
                            .collect()
                    }),
                    config: p.clone(),
                }
            })
            .collect();
        let mut everywhere = Extractor::default();
        for p in &providers {
            everywhere.add(&p.config);
        }
        let prefix = &config.stat_prefix;
        let scope = if prefix.is_empty() || prefix.ends_with('.') {
            format!("http.{stat_prefix}.jwt_authn.{prefix}")
        } else {
            format!("http.{stat_prefix}.jwt_authn.{prefix}.")
        };
        JwtAuthn {
            rules: config
                .rules
                .iter()
                .map(|r| {
                    let requires = r
                        .requires
                        .as_ref()
                        .map(|q| compile_requirement(q, &providers));
                    (r.matcher.clone(), requires)
                })
                .collect(),
            named: config
                .requirement_map
                .iter()
                .map(|(n, r)| (n.clone(), compile_requirement(r, &providers)))
                .collect(),
            providers,
            everywhere,
            bypass_cors_preflight: config.bypass_cors_preflight,
            strip_failure_response: config.strip_failure_response,
            stats: store.jwt_authn(scope),
        }
    }

    /// Keeps the key set a fetch for provider `tag` brought; false when
    /// the fetch failed.
    pub fn on_fetched(&self, answer: &Answer, tag: usize, shard: &Shard) -> bool {
        let w = shard.id;
        let Some(remote) = self.providers.get(tag).and_then(|p| p.remote.as_ref()) else {
            return false;
        };
        let kept = remote.keep(w, answer);
        let stat = if kept {
            sets::JwtAuthn::jwks_fetch_success
        } else {
            sets::JwtAuthn::jwks_fetch_failed
        };
        self.stats.inc(w, stat);
        kept
    }

    /// The request-headers phase, under the route's own setting if it
    /// has one; `fetches`: the key sets this request fetched (or failed
    /// to). A provider's remote key set that is needed and
    /// not held makes the request wait on its fetch (tagged with the
    /// provider's position); the filter runs again once it is done.
    pub fn on_request(
        &self,
        request: &RequestView,
        own: Option<&JwtPerRoute>,
        fetches: &Fetches,
        shard: &Shard,
        decision: &mut Decision,
    ) {
        let w = shard.id;
        let present = |name: &str| request.header(name).is_some_and(|v| !v.is_empty());
        if self.bypass_cors_preflight
            && request.method == "OPTIONS"
            && present("origin")
            && present("access-control-request-method")
        {
            self.stats.inc(w, sets::JwtAuthn::cors_preflight_bypassed);
            self.stats.inc(w, sets::JwtAuthn::allowed);
            return;
        }
        let requirement = match own {
            Some(JwtPerRoute::Disabled) => None,
            Some(JwtPerRoute::RequirementName(name)) => {
                match self.named.iter().find(|(n, _)| n == name) {
                    Some((_, r)) => Some(r),
                    None => {
                        let names: Vec<&str> = self.named.iter().map(|(n, _)| n.as_str()).collect();
                        let body = format!(
                            "Failed JWT authentication: Wrong requirement_name: {name}. It should be one of [{}]",
                            names.join(",")
                        );
                        self.stats.inc(w, sets::JwtAuthn::denied);
                        let mut reply = LocalReply::new(403, "");
                        if !self.strip_failure_response {
                            reply.body = Cow::Owned(body.into_bytes());
                        }
                        decision.reply = Some((reply, ResponseFlags::default()));
                        return;
                    }
                }
            }
            None => {
                let bare = request
                    .path
                    .split_once('?')
                    .map_or(request.path, |(b, _)| b);
                self.rules
                    .iter()
                    .find(|(m, _)| crate::router::accepts(m, request, bare))
                    .and_then(|(_, r)| r.as_ref())
            }
        };
        let Some(requirement) = requirement else {
            self.stats.inc(w, sets::JwtAuthn::allowed);
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut exchange = Exchange {
            request,
            fetches,
            fetch: None,
            cache_hits: 0,
            cache_misses: 0,
            edits: Edits::default(),
            dropped_params: Vec::new(),
            clear_route_cache: false,
            now,
            shard,
        };
        let status = self.check(requirement, &mut exchange);
        if let Some(i) = exchange.fetch {
            if let Some(remote) = self.providers.get(i).and_then(|p| p.remote.as_ref()) {
                decision.wait_on(remote.fetch(), i);
                return;
            }
        }
        self.stats
            .add(w, sets::JwtAuthn::jwt_cache_hit, exchange.cache_hits);
        self.stats
            .add(w, sets::JwtAuthn::jwt_cache_miss, exchange.cache_misses);
        if status == Status::Ok {
            self.stats.inc(w, sets::JwtAuthn::allowed);
            decision.request_edits =
                std::mem::take(&mut decision.request_edits).then(exchange.edits);
            decision.clear_route_cache |= exchange.clear_route_cache;
            if !exchange.dropped_params.is_empty() {
                let path = decision.path.as_deref().unwrap_or(request.path);
                decision.path = Some(without_params(path, &exchange.dropped_params));
            }
            return;
        }
        self.stats.inc(w, sets::JwtAuthn::denied);
        let code = if status == Status::JwtAudienceNotAllowed {
            403
        } else {
            401
        };
        if self.strip_failure_response {
            decision.reply = Some((LocalReply::new(code, ""), ResponseFlags::default()));
            return;
        }
        let path = request.path;
        let path = &path[..floor_boundary(path, MAX_REALM_PATH)];
        let mut challenge = format!(
            "Bearer realm=\"{}://{}{path}\"",
            request.scheme, request.authority
        );
        if status != Status::JwtMissed {
            challenge.push_str(", error=\"invalid_token\"");
        }
        decision.filtered.response.push(ResponseStep::Set(
            "www-authenticate".to_string(),
            challenge.into_bytes(),
        ));
        decision.reply = Some((
            LocalReply::new(code, status.message()),
            ResponseFlags::default(),
        ));
    }

    /// Whether the request satisfies `requirement` (Envoy's verifier
    /// tree, which runs synchronously here: every key set is local).
    fn check(&self, requirement: &Requirement, exchange: &mut Exchange) -> Status {
        match requirement {
            Requirement::Provider(i, audiences) => {
                let Some(provider) = self.providers.get(*i) else {
                    return Status::JwtUnknownIssuer;
                };
                let attempt = Attempt {
                    provider: Some(provider),
                    audiences: audiences.as_ref(),
                    allow_failed: false,
                    allow_missing: false,
                };
                self.authenticate(&provider.extractor, &attempt, exchange)
            }
            Requirement::AllowMissingOrFailed | Requirement::AllowMissing => {
                let attempt = Attempt {
                    provider: None,
                    audiences: None,
                    allow_failed: matches!(requirement, Requirement::AllowMissingOrFailed),
                    allow_missing: true,
                };
                self.authenticate(&self.everywhere, &attempt, exchange)
            }
            Requirement::AllowAll => Status::Ok,
            Requirement::All(children) => children
                .iter()
                .map(|c| self.check(c, exchange))
                .find(|s| *s != Status::Ok)
                .unwrap_or(Status::Ok),
            Requirement::Any {
                children,
                allow_missing,
                allow_missing_or_failed,
            } => {
                let mut outcome = Status::JwtMissed;
                // A child that passes settles it: key sets other children
                // wait for are not fetched (Envoy cancels their fetches).
                let pending = exchange.fetch;
                for child in children {
                    let status = self.check(child, exchange);
                    if status == Status::Ok {
                        exchange.fetch = pending;
                        return Status::Ok;
                    }
                    // Errors other than a missing token or an unknown
                    // issuer say most; an unknown issuer beats missing.
                    let weak = matches!(status, Status::JwtMissed | Status::JwtUnknownIssuer);
                    if !weak || outcome == Status::JwtMissed {
                        outcome = status;
                    }
                }
                if *allow_missing_or_failed || (*allow_missing && outcome == Status::JwtMissed) {
                    Status::Ok
                } else {
                    outcome
                }
            }
        }
    }

    /// Envoy's authenticator: every token found must pass (the last
    /// found is tried first) unless missing or failed ones are allowed.
    fn authenticate(
        &self,
        extractor: &Extractor,
        attempt: &Attempt,
        exchange: &mut Exchange,
    ) -> Status {
        for name in &extractor.sanitize {
            exchange.edits.remove(name);
        }
        let mut tokens = extractor.extract(exchange);
        let mut status = Status::JwtMissed;
        while let Some(location) = tokens.pop() {
            status = self.verify(&location, attempt, exchange);
            if status != Status::Ok && !attempt.allow_failed && !attempt.allow_missing {
                break;
            }
        }
        if attempt.allow_failed || (attempt.allow_missing && status == Status::JwtMissed) {
            Status::Ok
        } else {
            status
        }
    }

    /// Checks one token; a good one forwards what its provider asks.
    fn verify(&self, location: &Location, attempt: &Attempt, exchange: &mut Exchange) -> Status {
        let w = exchange.shard.id;
        let cache = attempt
            .provider
            .and_then(|p| p.caches.as_ref())
            .and_then(|c| c.get(w));
        let cached = match attempt.provider {
            Some(_) => {
                let hit = cache.and_then(|c| {
                    let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                    c.get(&location.token, exchange.now)
                });
                if hit.is_some() {
                    exchange.cache_hits += 1;
                } else {
                    exchange.cache_misses += 1;
                }
                hit
            }
            None => None,
        };
        let jwt = match cached.clone() {
            Some(jwt) => jwt,
            None => match Jwt::parse(&location.token) {
                Ok(jwt) => Arc::new(jwt),
                Err(status) => return status,
            },
        };
        if !location.issuers.allow(&jwt.iss) {
            return Status::JwtUnknownIssuer;
        }
        let Some(provider) = attempt.provider.or_else(|| self.by_issuer(&jwt.iss)) else {
            return Status::JwtUnknownIssuer;
        };
        let config = &provider.config;
        let skew = match config.clock_skew_seconds {
            0 => DEFAULT_CLOCK_SKEW,
            s => s,
        };
        let status = jwt.check_time(exchange.now, skew);
        if status != Status::Ok {
            return status;
        }
        if !attempt
            .audiences
            .unwrap_or(&provider.audiences)
            .allow(&jwt.audiences)
        {
            return Status::JwtAudienceNotAllowed;
        }
        if !provider.claims_hold(&jwt, exchange.now) {
            return Status::JwtVerificationFail;
        }
        if cached.is_none() {
            let fetched;
            let keys = match &provider.remote {
                None => &provider.jwks,
                Some(remote) => {
                    match remote.get(w, exchange.fetches.done.contains(&provider.index)) {
                        Some(keys) => {
                            fetched = keys;
                            &*fetched
                        }
                        None if exchange.fetches.failed.contains(&provider.index) => {
                            return Status::JwksFetchFail
                        }
                        None => {
                            // Judged again once the keys are fetched.
                            exchange.fetch.get_or_insert(provider.index);
                            return Status::JwksFetchFail;
                        }
                    }
                }
            };
            let status = keys.verify(&jwt);
            if status != Status::Ok {
                return status;
            }
            if let Some(cache) = cache {
                let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                c.put(jwt.clone(), &location.token);
            }
        }
        provider.forward(&jwt, location, exchange);
        Status::Ok
    }

    /// The first provider for `issuer`, else the first without one.
    fn by_issuer(&self, issuer: &str) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|p| p.config.issuer == issuer)
            .or_else(|| self.providers.iter().find(|p| p.config.issuer.is_empty()))
    }
}

impl Provider {
    /// `subjects`, `require_expiration` and `max_lifetime`.
    fn claims_hold(&self, jwt: &Jwt, now: u64) -> bool {
        let config = &self.config;
        if let Some(subjects) = &config.subjects {
            let sub = jwt.claim("sub").and_then(Value::as_str).unwrap_or("");
            if !subjects.matches(sub) {
                return false;
            }
        }
        if config.require_expiration && jwt.exp == 0 {
            return false;
        }
        // Envoy bounds what is left of a token's life, not `exp - iat`.
        if let Some(max) = config.max_lifetime {
            if jwt.exp == 0 || jwt.exp > now.saturating_add(max.as_secs()) {
                return false;
            }
        }
        true
    }

    /// What a verified token adds to the request: its payload, claims as
    /// headers, and the token's own header gone unless `forward`.
    fn forward(&self, jwt: &Jwt, location: &Location, exchange: &mut Exchange) {
        let config = &self.config;
        let edits = &mut exchange.edits;
        if !config.forward_payload_header.is_empty() {
            let mut payload = jwt.payload_base64url().to_string();
            if config.pad_forward_payload_header {
                while !payload.len().is_multiple_of(4) {
                    payload.push('=');
                }
            }
            edits
                .added
                .push((config.forward_payload_header.clone(), payload.into_bytes()));
        }
        for (header, claim) in &config.claim_to_headers {
            if let Some(value) = jwt.claim(claim).and_then(claim_value) {
                edits.added.push((header.clone(), value.into_bytes()));
                exchange.clear_route_cache |= config.clear_route_cache;
            }
        }
        if !config.forward {
            if let Some(header) = location.header {
                edits.remove(header);
            }
            if let Some(param) = location.param {
                exchange.dropped_params.push(param.to_string());
            }
        }
    }
}

/// `path` without the query parameters `dropped`, its query rebuilt as
/// Envoy rebuilds one: decoded, sorted by name (a name's values in
/// order), every pair `name=value`.
fn without_params(path: &str, dropped: &[String]) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if !dropped.contains(&name) {
            params.entry(name).or_default().push(percent_decode(value));
        }
    }
    let pairs: Vec<String> = params
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| format!("{name}={v}")))
        .collect();
    if pairs.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", pairs.join("&"))
    }
}

/// The largest index at most `max` on a character boundary of `s`.
fn floor_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}
