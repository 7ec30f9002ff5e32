//! The cluster-wide store: a limit's buckets in Redis, shared by every gateway
//! process that names the same server, so a fleet enforces one limit.
//!
//! **One atomic script per check.** The GCRA step (`SCRIPT`) runs inside Redis:
//! read the TAT, decide, write the new TAT with an expiry at the moment the bucket is
//! full again (so idle keys leave Redis on their own). Redis runs a script without
//! interleaving another command, so two gateways admitting the same key never race.
//! The clock is Redis's (`TIME`), so gateways with skewed clocks agree.
//!
//! **Consistency.** Exact for the requests Redis decides: every admission moves the
//! one TAT. With a replica or a failover, admissions that Redis acknowledged but had
//! not replicated are forgotten, and a bucket may briefly be fuller than it was.
//!
//! **Failure.** A check that does not complete within `timeout` (no connection yet,
//! Redis down, a slow reply) follows the configured mode: `fail_open` admits the
//! request, `fail_closed` refuses it with 503. Each failure is counted; the log gets
//! one warning per second at most. The first check makes the connection (the checks
//! of its first timeout wait for it), and redis-rs's connection manager reconnects
//! after a loss, so the limit resumes when Redis returns. While Redis has never
//! answered, one attempt is made a second, and the checks in between fail at once.
//!
//! **Redis Cluster** (`cluster = true`, the seed nodes' URLs separated by commas): a
//! check is one key, so it runs on the node that holds the key's slot, and the cluster
//! connection follows slot moves and failovers.
//!
//! **Keys.** `gw:rl:{DIGEST}:SCOPE` (`gw:q:…` for quotas, `quota`): the digest is
//! the SHA-256 of the key's bytes, cut to 16 bytes, so a client's header value never
//! becomes a Redis key as it is; in braces, it is the key's Redis Cluster hash tag, so
//! buckets spread over the cluster by client, whatever braces the scope holds (a route
//! template's `{id}`). The scope names the limit and which routes share it, the same
//! in every process built from one configuration.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::gcra::{Admitted, Gcra, Refused};
use crate::settings::{Setting, SettingError};

/// `store = { redis = … }` of a rate limit, as the compiler lays it out.
#[derive(Debug)]
pub struct RedisSpec {
    /// `redis://` or `rediss://` URL, usually `${env:REDIS_URL}`; for a cluster, its
    /// seed nodes' URLs separated by commas.
    pub url: Setting,
    /// A Redis Cluster: keys go to the node that holds their slot.
    pub cluster: bool,
    /// Longest a check waits for Redis.
    pub timeout: Duration,
    /// What a check that Redis did not answer decides.
    pub fail_open: bool,
    /// Tokens a gateway leases at once and spends locally (`lease`); 1: every check
    /// goes to Redis.
    pub batch: u64,
}

/// `SCRIPT`, hashed once.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// GCRA in Redis, for `want` tokens at once (a lease; one for a plain check), after
/// giving back `refund` tokens that an expired lease left unspent. KEYS[1]: the
/// bucket; ARGV: emission and tolerance in microseconds, `want`, `refund`. Grants as
/// many of `want` as the bucket holds: returns `{granted, ahead}` (the TAT is `ahead`
/// µs after now), or `{0, wait}` when it holds none.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') - tonumber(ARGV[4]) * emission
if tat < now then tat = now end
local granted = math.min(want, math.floor((now + tolerance - tat) / emission))
if granted < 1 then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  return {0, tat + emission - now - tolerance}
end
tat = tat + granted * emission
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {granted, tat - now}
";

/// Redis's answer to a request for tokens; times in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// `tokens` (at least one) taken; the bucket is full again in `ahead`.
    Granted { tokens: u64, ahead: u64 },
    /// The bucket holds none; one comes in `wait`.
    Refused { wait: u64 },
}

/// The verdict of a check Redis could not give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unanswered;

/// Where a store's Redis is.
#[derive(Clone)]
/// Boxed: the two differ much in size, and are used only to connect.
enum Client {
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClient>),
}

/// A connection to it: both kinds multiplex and reconnect by themselves.
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One limit scope's keys in Redis, and the connection to it.
pub struct RedisStore {
    client: Client,
    /// Shared with the task that connects.
    connection: Arc<ArcSwapOption<Connection>>,
    connecting: Arc<AtomicBool>,
    /// Wakes the checks that wait for the first connection.
    connected: Arc<Notify>,
    timeout: Duration,
    pub(crate) fail_open: bool,
    /// `rl` or `q`: what the keys hold.
    kind: &'static str,
    scope: String,
    failures: AtomicU64,
    /// Seconds since the epoch of the last failure warning.
    warned: AtomicU64,
    /// Milliseconds since the epoch when the last connection attempt started.
    attempted: AtomicU64,
}

impl RedisStore {
    /// The store of `kind` (`rl`, `q`); `scope` names the limit and its routes. The
    /// URL is checked here, at start-up; the connection is made at the first check.
    pub fn new(spec: &RedisSpec, kind: &'static str, scope: &str) -> Result<Self, SettingError> {
        let url = spec.url.resolve()?;
        let invalid = |e: redis::RedisError| {
            SettingError::new(spec.url.origin, format!("not a Redis URL: {e}"))
        };
        let client = if spec.cluster {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            Client::Cluster(Box::new(ClusterClient::new(nodes).map_err(invalid)?))
        } else {
            Client::Single(Box::new(
                redis::Client::open(url.as_str()).map_err(invalid)?,
            ))
        };
        Ok(RedisStore {
            client,
            connection: Arc::new(ArcSwapOption::empty()),
            connecting: Arc::new(AtomicBool::new(false)),
            connected: Arc::new(Notify::new()),
            timeout: spec.timeout,
            fail_open: spec.fail_open,
            kind,
            scope: scope.to_owned(),
            failures: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            attempted: AtomicU64::new(0),
        })
    }

    /// Up to `want` tokens of `key`'s bucket, after giving back `refund`, or
    /// `Unanswered` within the timeout.
    pub async fn lease(
        &self,
        gcra: &Gcra,
        key: &[u8],
        want: u64,
        refund: u64,
    ) -> Result<Lease, Unanswered> {
        let micros = |nanos: u64| (nanos / 1_000).max(1);
        let mut invocation = GCRA.key(self.key(key, ""));
        invocation
            .arg(micros(gcra.emission))
            .arg(micros(gcra.tolerance))
            .arg(want)
            .arg(refund);
        Ok(match self.invoke::<(u64, u64)>(&invocation).await? {
            (0, wait) => Lease::Refused {
                wait: wait.saturating_mul(1_000),
            },
            (tokens, ahead) => Lease::Granted {
                tokens,
                ahead: ahead.saturating_mul(1_000),
            },
        })
    }

    /// The Redis key of `key` in this store: `gw:KIND:{DIGEST}:SCOPE` and `suffix`.
    pub(super) fn key(&self, key: &[u8], suffix: &str) -> String {
        let digest = Sha256::digest(key);
        let mut name = String::with_capacity(48 + self.scope.len() + suffix.len());
        let _ = write!(name, "gw:{}:{{", self.kind);
        for byte in &digest[..16] {
            let _ = write!(name, "{byte:02x}");
        }
        let _ = write!(name, "}}:{}{suffix}", self.scope);
        name
    }

    /// Runs one script call within the timeout: its reply, or `Unanswered`.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Unanswered> {
        let connection = match self.connection.load_full() {
            Some(connection) => connection,
            // The first checks wait for the connection, within their timeout.
            None => {
                let connected = self.connected.notified();
                if !self.connect() {
                    return Err(self.failed("no connection to Redis"));
                }
                let _ = tokio::time::timeout(self.timeout, connected).await;
                match self.connection.load_full() {
                    Some(connection) => connection,
                    None => return Err(self.failed("no connection to Redis")),
                }
            }
        };
        let answer = match &*connection {
            Connection::Single(single) => {
                let mut single = single.clone();
                let call = invocation.invoke_async::<T>(&mut single);
                tokio::time::timeout(self.timeout, call).await
            }
            Connection::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                let call = invocation.invoke_async::<T>(&mut cluster);
                tokio::time::timeout(self.timeout, call).await
            }
        };
        match answer {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(self.failed("Redis refused the check")),
            Err(_) => Err(self.failed("Redis did not answer in time")),
        }
    }

    /// The verdict of Redis on one request of `key`, or `Unanswered` within the
    /// timeout.
    pub async fn check(
        &self,
        gcra: &Gcra,
        key: &[u8],
    ) -> Result<Result<Admitted, Refused>, Unanswered> {
        Ok(match self.lease(gcra, key, 1, 0).await? {
            Lease::Granted { ahead, .. } => Ok(Admitted {
                tat: 0,
                remaining: gcra.tolerance.saturating_sub(ahead) / gcra.emission,
                reset: ahead,
            }),
            Lease::Refused { wait } => Err(Refused { retry_after: wait }),
        })
    }

    /// Longest a check waits for Redis.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a check should wait for a connection: one is being made, started
    /// less than a timeout ago (the checks of a fresh gateway wait the millisecond it
    /// takes), or this call starts one. An attempt that has run longer, or one that
    /// failed less than a second ago, means Redis is not there: fail at once rather
    /// than make every request wait out its timeout.
    fn connect(&self) -> bool {
        let now = epoch_millis();
        let started = self.attempted.load(Ordering::Acquire);
        let timeout = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        if self.connecting.load(Ordering::Acquire) {
            return now.saturating_sub(started) < timeout;
        }
        if now.saturating_sub(started) < 1_000 || self.connecting.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.attempted.store(now, Ordering::Release);
        let client = self.client.clone();
        let timeout = self.timeout;
        let (connection, connecting) = (self.connection.clone(), self.connecting.clone());
        let connected = self.connected.clone();
        tokio::spawn(async move {
            let connect = async {
                match client {
                    Client::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
                            .set_response_timeout(Some(timeout))
                            .set_number_of_retries(2);
                        client
                            .get_connection_manager_with_config(config)
                            .await
                            .map(Connection::Single)
                    }
                    Client::Cluster(client) => {
                        client.get_async_connection().await.map(Connection::Cluster)
                    }
                }
            };
            if let Ok(Ok(made)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                connection.store(Some(Arc::new(made)));
                connected.notify_waiters();
            }
            connecting.store(false, Ordering::Release);
        });
        true
    }

    /// Counts a failure, and warns at most once a second.
    pub(super) fn failed(&self, why: &'static str) -> Unanswered {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = epoch_millis() / 1_000;
        let last = self.warned.load(Ordering::Relaxed);
        if now > last
            && self
                .warned
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                scope = %self.scope,
                failures,
                fail_open = self.fail_open,
                "{why}"
            );
        }
        Unanswered
    }

    /// Checks Redis could not decide, since start-up.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

fn epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
