//! Traffic control: rate limits and concurrency limits (`concurrency`), policies of
//! the request phase. A rate limit admits
//! `count` requests per `period` per key, `burst` of them at once (GCRA, `gcra`),
//! and refuses the rest with 429 before the upstream sees them.
//!
//! Where the buckets live: `local`, one table per limit scope shared by every worker
//! of the process without a lock (`RateLimiter`); or `redis`, shared by a fleet, one
//! script per check or, batched, one per lease of N tokens (`lease`;
//! `SharedRateLimiter`). Which buckets a request uses: its key (`key`), in
//! the scope the compiler laid out (each route its own, or shared by the routes of a
//! `global` or `group:NAME` scope).
//!
//! Fields (draft-ietf-httpapi-ratelimit-headers-09): `RateLimit-Policy` describes the
//! limit as its burst (`q`) per the time the burst takes to refill (`w`, seconds),
//! and `RateLimit` what is left (`r`) and the seconds until the bucket is full again
//! (`t`); a 429 also carries `Retry-After`. Both are on every 429, and on admitted
//! responses when the policy sets `headers = true`.

#[cfg(feature = "server")]
pub mod concurrency;
#[cfg(feature = "server")]
pub mod gcra;
#[cfg(feature = "server")]
pub mod key;
#[cfg(feature = "server")]
pub mod lease;
#[cfg(feature = "server")]
pub mod local;
#[cfg(feature = "server")]
pub mod quota;
#[cfg(feature = "server")]
pub mod redis;
#[cfg(feature = "server")]
mod table;

/// Limits longer than this are quotas (a store that outlives the process): the
/// in-process store's TATs are nanoseconds, and a bucket that takes longer than a day
/// to refill is not a rate limit.
pub const MAX_REFILL_SECONDS: u64 = 86_400;

/// Most tokens a batched Redis store leases at once (`lease`).
pub const MAX_BATCH: u64 = (1 << 24) - 1;

/// `"100/min"`: the count and the period in seconds. Units: `s`, `min`, `h`, `d`
/// (also `second`, `minute`, `hour`, `day`); the count is at least 1.
pub fn parse_rate(text: &str) -> Result<(u64, u64), String> {
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate: write it as `100/min`"))?;
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{count}` is not a whole number of requests"))?;
    if count == 0 {
        return Err("a rate of 0 admits nothing: remove the route instead".to_owned());
    }
    let period = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3_600,
        "d" | "day" => 86_400,
        other => {
            return Err(format!(
                "`{other}` is not a period: use s, min, h or d (quotas per month are not rate limits)"
            ));
        }
    };
    if count > 1_000_000_000 * period {
        return Err(format!(
            "{count} per {period} s is more than one per nanosecond"
        ));
    }
    Ok((count, period))
}

#[cfg(feature = "server")]
pub use policy::{Limited, RateLimitSpec, RateLimiter, SharedRateLimiter};

#[cfg(feature = "server")]
mod policy {
    use std::fmt::Write;
    use std::sync::Arc;

    use http::StatusCode;

    use super::gcra::{Admitted, Gcra};
    use super::key::{Key, LimitKey};
    use super::lease::LeaseTable;
    use super::local::LocalStore;
    use super::redis::{RedisSpec, RedisStore};
    use crate::message::response::Response;
    use crate::pipeline::Stop;
    use crate::settings::SettingError;

    /// `rate_limit = { … }` of a policy, as the compiler lays it out.
    #[derive(Debug)]
    pub struct RateLimitSpec {
        pub name: &'static str,
        pub count: u64,
        pub period_seconds: u64,
        pub burst: u64,
        pub key: LimitKey,
        /// Buckets the in-process store keeps (see `local`), or leases with a
        /// batched Redis store.
        pub max_keys: usize,
        /// Whether admitted responses carry the rate-limit fields too.
        pub headers: bool,
    }

    /// The buckets of one limit in one scope, in this process.
    pub struct RateLimiter {
        limit: Limit,
        store: LocalStore,
    }

    /// The buckets of one limit in one scope, in the Redis every gateway of the fleet
    /// shares; with `batch`, leased a slice at a time (`lease`).
    pub struct SharedRateLimiter {
        limit: Limit,
        /// Shared with the background fetches of the next leases.
        redis: Arc<RedisStore>,
        leases: Option<Arc<LeaseTable>>,
    }

    /// What both kinds know of their limit: the verdicts and the fields they write.
    struct Limit {
        spec: &'static RateLimitSpec,
        gcra: Gcra,
    }

    /// A request the limit admitted, for the response's fields.
    #[derive(Debug, Clone, Copy)]
    pub struct Admission {
        remaining: u64,
        reset_seconds: u64,
    }

    /// A request the limit refused: what the 429 says.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Limited {
        pub by: &'static str,
        /// What the 429's body says: a rate limit or a quota exceeded.
        pub what: &'static str,
        /// Seconds until a request would be admitted (at least 1).
        pub retry_after: u64,
        /// The policy's burst, and the seconds it takes to refill.
        pub quota: u64,
        pub window: u64,
    }

    const NANOS: u64 = 1_000_000_000;

    fn seconds(nanos: u64) -> u64 {
        nanos.div_ceil(NANOS)
    }

    impl RateLimiter {
        /// The limit's buckets in one scope.
        pub fn new(spec: &'static RateLimitSpec) -> Self {
            RateLimiter {
                limit: Limit::new(spec),
                store: LocalStore::new(spec.max_keys),
            }
        }

        /// The request phase: admits the request under `key`, or stops it with 429.
        /// The admission is for `respond`, when the policy sets `headers`.
        pub fn check(&self, key: impl std::hash::Hash) -> Result<Admission, Stop> {
            let now = self.store.now();
            self.limit
                .verdict(self.store.check(&self.limit.gcra, key, now))
        }

        /// The response phase: the rate-limit fields on an admitted response.
        pub fn respond(&self, admission: Admission, response: &mut Response) {
            self.limit.respond(admission, response);
        }

        /// How many buckets the store holds (its memory is fixed by this).
        pub fn capacity(&self) -> usize {
            self.store.capacity()
        }
    }

    impl SharedRateLimiter {
        /// The limit's buckets in one scope, in `store`; `scope` names it there.
        /// Fails when the Redis URL does not resolve.
        pub fn new(
            spec: &'static RateLimitSpec,
            store: &'static RedisSpec,
            scope: &str,
        ) -> Result<Self, Vec<SettingError>> {
            let redis = Arc::new(RedisStore::new(store, "rl", scope).map_err(|e| vec![e])?);
            Ok(SharedRateLimiter {
                limit: Limit::new(spec),
                redis,
                leases: (store.batch > 1)
                    .then(|| Arc::new(LeaseTable::new(spec.max_keys, store.batch))),
            })
        }

        /// The request phase: Redis's verdict (or the lease's), or the configured one
        /// when Redis does not answer in time (`fail_open` admits; otherwise 503).
        pub async fn check(&self, key: Key<'_>) -> Result<Admission, Stop> {
            let gcra = &self.limit.gcra;
            let stable = key.stable_bytes();
            let verdict = match &self.leases {
                Some(leases) => leases.check(&self.redis, gcra, &key, &stable).await,
                None => self.redis.check(gcra, &stable).await,
            };
            match verdict {
                Ok(verdict) => self.limit.verdict(verdict),
                Err(_) if self.redis.fail_open => Ok(Admission {
                    remaining: 0,
                    reset_seconds: 0,
                }),
                Err(_) => Err(Stop::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate limit store unavailable",
                    self.limit.spec.name,
                )),
            }
        }

        /// The response phase: the rate-limit fields on an admitted response.
        pub fn respond(&self, admission: Admission, response: &mut Response) {
            self.limit.respond(admission, response);
        }
    }

    impl Limit {
        fn new(spec: &'static RateLimitSpec) -> Self {
            Limit {
                spec,
                gcra: Gcra::new(spec.count, spec.period_seconds * NANOS, spec.burst),
            }
        }

        fn verdict(
            &self,
            verdict: Result<Admitted, super::gcra::Refused>,
        ) -> Result<Admission, Stop> {
            match verdict {
                Ok(Admitted {
                    remaining, reset, ..
                }) => Ok(Admission {
                    remaining,
                    reset_seconds: seconds(reset),
                }),
                Err(refused) => Err(Stop::RateLimited(Limited {
                    by: self.spec.name,
                    what: "rate limit exceeded",
                    retry_after: seconds(refused.retry_after).max(1),
                    quota: self.spec.burst,
                    window: seconds(self.gcra.tolerance),
                })),
            }
        }

        fn respond(&self, admission: Admission, response: &mut Response) {
            if self.spec.headers {
                let quota = (self.spec.burst, seconds(self.gcra.tolerance));
                let fields = rate_limit_fields(
                    self.spec.name,
                    quota,
                    admission.remaining,
                    admission.reset_seconds,
                );
                let response_fields = response.fields_mut();
                response_fields.append(b"ratelimit-policy", fields.0.as_bytes());
                response_fields.append(b"ratelimit", fields.1.as_bytes());
            }
        }
    }

    impl Limited {
        /// The 429's fields: `Retry-After`, `RateLimit-Policy`, `RateLimit`.
        pub fn apply(&self, response: &mut Response) {
            let (policy, state) =
                rate_limit_fields(self.by, (self.quota, self.window), 0, self.retry_after);
            let fields = response.fields_mut();
            fields.append(b"retry-after", self.retry_after.to_string().as_bytes());
            fields.append(b"ratelimit-policy", policy.as_bytes());
            fields.append(b"ratelimit", state.as_bytes());
        }
    }

    /// `RateLimit-Policy` and `RateLimit` values: policy names are the compiler's
    /// (letters, digits, `-` and `_`), safe in a structured-field string.
    pub(super) fn rate_limit_fields(
        name: &str,
        (quota, window): (u64, u64),
        remaining: u64,
        reset: u64,
    ) -> (String, String) {
        let mut policy = String::with_capacity(32);
        let mut state = String::with_capacity(32);
        let _ = write!(policy, "\"{name}\";q={quota};w={window}");
        let _ = write!(state, "\"{name}\";r={remaining};t={reset}");
        (policy, state)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn fields() {
            assert_eq!(
                rate_limit_fields("per-user", (20, 12), 3, 7),
                (
                    "\"per-user\";q=20;w=12".to_owned(),
                    "\"per-user\";r=3;t=7".to_owned()
                )
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/min"), Ok((100, 60)));
        assert_eq!(parse_rate("5/s"), Ok((5, 1)));
        assert_eq!(parse_rate(" 7 / hour "), Ok((7, 3600)));
        assert_eq!(parse_rate("1/d"), Ok((1, 86_400)));
        for bad in [
            "0/s",
            "-1/s",
            "1.5/s",
            "100",
            "100/month",
            "100/",
            "/s",
            "x/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("2000000000/s").is_err());
    }
}
