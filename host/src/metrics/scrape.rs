//! Values read when `/metrics` is scraped rather than counted as they happen: the queue's
//! depth and oldest message (from the spool's in-memory index, no disk access), the spool's
//! fsync and commit counters, events the event log lost, and the Redis state backend's
//! calls and circuit when `[state] backend = "redis"`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::events::Events;
use crate::spool::{unix_now, Spool};
use crate::state::StateBackend;

pub(super) struct Scraped {
    pub spool: Spool,
    pub events: Events,
    pub state: std::sync::Arc<dyn StateBackend>,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(metric)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(metric)
}

impl Collector for Scraped {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let (depth, oldest) = self.spool.depth();
        let age = oldest.map_or(0, |t| unix_now().saturating_sub(t));
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut e,
            "queue_messages",
            "Messages in the queue (spooled, not yet delivered, bounced or expired)",
            as_i64(depth as u64),
        )?;
        gauge(
            &mut e,
            "queue_oldest_age_seconds",
            "Age of the oldest message in the queue (0 when it is empty)",
            as_i64(age),
        )?;
        let stats = self.spool.stats();
        counter(
            &mut e,
            "spool_file_syncs",
            "fdatasync calls on spooled message and envelope files",
            stats.file_syncs,
        )?;
        counter(
            &mut e,
            "spool_dir_syncs",
            "fsync calls on the queue directory (one per commit batch that changed it)",
            stats.dir_syncs,
        )?;
        counter(
            &mut e,
            "spool_commit_batches",
            "Group commits run; operations / batches is the mean batch size",
            stats.batches,
        )?;
        counter(
            &mut e,
            "spool_commit_operations",
            "Stores, updates and removals committed (or refused) in group commits",
            stats.ops,
        )?;
        counter(
            &mut e,
            "events_lost",
            "Event log lines lost (full channel, failed write)",
            self.events.lost(),
        )?;
        let Some(redis) = self.state.redis_metrics() else {
            return Ok(());
        };
        for (name, help, value) in [
            (
                "state_redis_calls",
                "State calls made to the Redis backend",
                redis.calls,
            ),
            (
                "state_redis_failures",
                "State calls that failed for want of Redis (refused, dropped, timed out)",
                redis.failures,
            ),
            (
                "state_redis_timeouts",
                "Of those, calls Redis did not answer within command_timeout",
                redis.timeouts,
            ),
            (
                "state_redis_fast_failures",
                "State calls refused at once while the circuit was open",
                redis.fast_failures,
            ),
            (
                "state_redis_outages",
                "Times the circuit opened",
                redis.outages,
            ),
            (
                "state_redis_recoveries",
                "Times the circuit closed again",
                redis.recoveries,
            ),
            (
                "state_redis_errors",
                "State calls Redis answered with an error (script or server)",
                redis.errors,
            ),
        ] {
            counter(&mut e, name, help, value)?;
        }
        gauge(
            &mut e,
            "state_redis_circuit_open",
            "1 while the circuit is open (Redis unreachable), else 0",
            i64::from(redis.open),
        )
    }
}
