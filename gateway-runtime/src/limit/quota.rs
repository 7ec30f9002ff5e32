//! Quotas: at most `limit` requests per key per day or month, counted in the Redis
//! every gateway of the fleet shares, with what is left on every response.
//!
//! **Calendar windows** (`window = "calendar"`) start at midnight, or on the first
//! of the month, in the configured time zone (daylight saving included: a day may
//! last 23 or 25 hours). Each window is its own counter, `INCR`ed by one script that
//! refuses once it reaches the limit and expires the counter after the window ends.
//! Gateways place requests in windows by their own clocks, so at a boundary a
//! request may count in either window by the clocks' skew.
//!
//! **Rolling windows** (`window = "rolling"`: the last 24 hours, or 30 days) use the
//! sliding-window counter: two fixed windows' counters, the previous weighted by how
//! much of it the rolling window still covers. It is exact when the previous
//! window's requests were spread evenly, and never admits more than `limit` in one
//! fixed window.
//!
//! Responses carry `RateLimit-Policy` (`q`: the limit; `w`: the window's seconds)
//! and `RateLimit` (`r`: requests left; `t`: seconds until the window ends); a
//! refused request gets 429 with `Retry-After`. Redis unreachable: the store's
//! `on_error` mode decides, as for rate limits.

use std::sync::LazyLock;

use http::StatusCode;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::key::{Key, LimitKey};
use super::policy::{Limited, rate_limit_fields};
use super::redis::{RedisSpec, RedisStore};
use crate::message::response::Response;
use crate::pipeline::Stop;
use crate::settings::SettingError;

/// `quota = { … }` of a policy, as the compiler lays it out.
#[derive(Debug)]
pub struct QuotaSpec {
    pub name: &'static str,
    pub limit: u64,
    pub period: QuotaPeriod,
    pub window: QuotaWindow,
    pub key: LimitKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaWindow {
    /// Days or months of the calendar in this IANA time zone.
    Calendar { time_zone: &'static str },
    /// The last 24 hours, or the last 30 days.
    Rolling,
}

/// A fixed window: milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: i64,
    end: i64,
}

const DAY_MS: i64 = 86_400_000;

/// A calendar window's counter. KEYS[1]; ARGV: the limit, the expiry (ms since
/// the epoch). Returns `{admitted, used}`.
static CALENDAR: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return {0, used, 0} end
used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return {1, used, 0}
",
    )
});

/// The sliding-window counter. KEYS[1]: this window's counter, KEYS[2]: the previous
/// one's; ARGV: the limit, the window's length and how far into it now is (ms), the
/// expiry of this window's counter. Returns `{admitted, used, wait_ms}`.
static ROLLING: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local limit = tonumber(ARGV[1])
local length = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local weight = (length - elapsed) / length
if previous * weight + current + 1 > limit then
  local wait
  if current + 1 > limit then
    wait = (length - elapsed) + length * (1 - (limit - 1) / current)
  else
    wait = length * (1 - (limit - 1 - current) / previous) - elapsed
  end
  return {0, math.floor(previous * weight + current), math.max(1, math.ceil(wait))}
end
current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
return {1, math.floor(previous * weight + current), 0}
",
    )
});

/// One quota in one scope.
pub struct Quota {
    spec: &'static QuotaSpec,
    redis: RedisStore,
    /// The calendar's time zone; `None` for rolling windows.
    zone: Option<TimeZone>,
}

/// A request the quota admitted, for the response's fields.
#[derive(Debug, Clone, Copy)]
pub struct QuotaAdmission {
    /// `None` when Redis did not answer and the quota failed open.
    left: Option<(u64, Window)>,
}

impl Quota {
    /// The quota's counters in `store`; `scope` names them there. Fails when the
    /// Redis URL does not resolve, or the time zone is not in the database.
    pub fn new(
        spec: &'static QuotaSpec,
        store: &'static RedisSpec,
        scope: &str,
    ) -> Result<Self, Vec<SettingError>> {
        let zone = match spec.window {
            QuotaWindow::Calendar { time_zone } => Some(TimeZone::get(time_zone).map_err(|e| {
                vec![SettingError::new(
                    spec.name,
                    format!("time zone `{time_zone}`: {e}"),
                )]
            })?),
            QuotaWindow::Rolling => None,
        };
        let redis = RedisStore::new(store, "q", scope).map_err(|e| vec![e])?;
        Ok(Quota { spec, redis, zone })
    }

    /// The request phase: counts the request against its key's quota, or stops it
    /// with 429 (503 when Redis does not answer and the store fails closed).
    pub async fn check(&self, key: Key<'_>) -> Result<QuotaAdmission, Stop> {
        let now = Timestamp::now();
        let now_ms = now.as_millisecond();
        let window = self.window(now);
        let stable = key.stable_bytes();
        let answer = match self.zone {
            Some(_) => {
                let mut call = CALENDAR.key(self.redis.key(&stable, &format!(":{}", window.start)));
                call.arg(self.spec.limit).arg(window.end + DAY_MS);
                self.redis.invoke::<(u64, u64, u64)>(&call).await
            }
            None => {
                let length = window.end - window.start;
                let mut call = ROLLING.key(self.redis.key(&stable, &format!(":{}", window.start)));
                call.key(
                    self.redis
                        .key(&stable, &format!(":{}", window.start - length)),
                )
                .arg(self.spec.limit)
                .arg(length)
                .arg(now_ms - window.start)
                .arg(window.end + length);
                self.redis.invoke::<(u64, u64, u64)>(&call).await
            }
        };
        let seconds_to = |ms: i64| ((ms - now_ms).max(0) as u64).div_ceil(1_000);
        match answer {
            Ok((1, used, _)) => Ok(QuotaAdmission {
                left: Some((self.spec.limit.saturating_sub(used), window)),
            }),
            Ok((_, _, wait)) => Err(Stop::RateLimited(Limited {
                by: self.spec.name,
                what: "quota exceeded",
                retry_after: match self.zone {
                    Some(_) => seconds_to(window.end),
                    None => wait.div_ceil(1_000),
                }
                .max(1),
                quota: self.spec.limit,
                window: ((window.end - window.start) as u64).div_ceil(1_000),
            })),
            Err(_) if self.redis.fail_open => Ok(QuotaAdmission { left: None }),
            Err(_) => Err(Stop::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "quota store unavailable",
                self.spec.name,
            )),
        }
    }

    /// The response phase: the quota's fields, what is left of it.
    pub fn respond(&self, admission: QuotaAdmission, response: &mut Response) {
        let Some((left, window)) = admission.left else {
            return;
        };
        let now = Timestamp::now().as_millisecond();
        let seconds = |ms: i64| (ms.max(0) as u64).div_ceil(1_000);
        let (policy, state) = rate_limit_fields(
            self.spec.name,
            (self.spec.limit, seconds(window.end - window.start)),
            left,
            seconds(window.end - now),
        );
        let fields = response.fields_mut();
        fields.append(b"ratelimit-policy", policy.as_bytes());
        fields.append(b"ratelimit", state.as_bytes());
    }

    /// The fixed window `now` is in.
    fn window(&self, now: Timestamp) -> Window {
        match &self.zone {
            Some(zone) => calendar(now, zone, self.spec.period),
            None => {
                let length = match self.spec.period {
                    QuotaPeriod::Day => DAY_MS,
                    QuotaPeriod::Month => 30 * DAY_MS,
                };
                let ms = now.as_millisecond();
                let start = ms - ms.rem_euclid(length);
                Window {
                    start,
                    end: start + length,
                }
            }
        }
    }
}

/// The calendar day or month of `now` in `zone`, from its first instant to the
/// next one's. A day or month beyond jiff's range (years ±9999) falls back to UTC
/// days.
fn calendar(now: Timestamp, zone: &TimeZone, period: QuotaPeriod) -> Window {
    let date = now.to_zoned(zone.clone()).date();
    let (first, next) = match period {
        QuotaPeriod::Day => (date, date.tomorrow()),
        QuotaPeriod::Month => (
            date.first_of_month(),
            date.first_of_month().checked_add(1.month()),
        ),
    };
    let instant = |date: jiff::civil::Date| {
        date.to_zoned(zone.clone())
            .and_then(|z| z.start_of_day())
            .map(|z| z.timestamp().as_millisecond())
    };
    match (instant(first), next.and_then(instant)) {
        (Ok(start), Ok(end)) => Window { start, end },
        _ => {
            let ms = now.as_millisecond();
            let start = ms - ms.rem_euclid(DAY_MS);
            Window {
                start,
                end: start + DAY_MS,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn calendar_days_and_months_in_a_time_zone() {
        let berlin = TimeZone::get("Europe/Berlin").expect("zone");
        // 00:30 in Berlin on 2 December is still 1 December in UTC.
        let window = calendar(at("2026-12-01T23:30:00Z"), &berlin, QuotaPeriod::Day);
        assert_eq!(window.start, at("2026-12-01T23:00:00Z").as_millisecond());
        assert_eq!(window.end, at("2026-12-02T23:00:00Z").as_millisecond());
        let month = calendar(at("2026-12-15T12:00:00Z"), &berlin, QuotaPeriod::Month);
        assert_eq!(month.start, at("2026-11-30T23:00:00Z").as_millisecond());
        assert_eq!(month.end, at("2026-12-31T23:00:00Z").as_millisecond());
        // The day the clocks go forward lasts 23 hours.
        let short = calendar(at("2026-03-29T12:00:00Z"), &berlin, QuotaPeriod::Day);
        assert_eq!(short.end - short.start, 23 * 3_600_000);
    }
}
