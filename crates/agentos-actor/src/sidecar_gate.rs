//! Keeps one actor's VM shutdown from killing the sidecar under another
//! actor's VM that is booting on it.
//!
//! agentos-client 0.2.21 counts a VM on its pool's shared sidecar only at
//! the end of `AgentOs::create`, and `AgentOs::shutdown` kills the sidecar
//! when that count reaches zero. A shutdown of the last counted VM while
//! another VM boots would therefore kill the sidecar the booting VM is
//! being built on: its first actions fail with a lost sidecar.
//!
//! Each pool has a gate: boots pass it together, a shutdown passes it
//! alone. A shutdown so waits for the boots in flight (which are counted
//! once they finish), and boots that start meanwhile wait until the
//! shutdown made its kill decision.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// Longest a shutdown waits for boots in flight before it goes ahead
/// anyway (a boot stuck on a hung sidecar must not keep an actor awake).
const SHUTDOWN_WAIT_LIMIT: Duration = Duration::from_secs(60);

static GATES: LazyLock<Mutex<HashMap<String, Arc<RwLock<()>>>>> = LazyLock::new(Default::default);

fn gate(pool: &str) -> Arc<RwLock<()>> {
    let mut gates = GATES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    gates.entry(pool.to_owned()).or_default().clone()
}

/// Held while a VM boots on `pool`'s sidecar.
pub async fn boot(pool: &str) -> OwnedRwLockReadGuard<()> {
    gate(pool).read_owned().await
}

/// Held while a VM on `pool`'s sidecar shuts down; `None` when boots in
/// flight did not finish within [`SHUTDOWN_WAIT_LIMIT`].
pub async fn shutdown(pool: &str) -> Option<OwnedRwLockWriteGuard<()>> {
    tokio::time::timeout(SHUTDOWN_WAIT_LIMIT, gate(pool).write_owned()).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shutdown_waits_for_boots_in_flight_and_holds_new_ones_off() {
        let pool = "gate-test";
        let booting = boot(pool).await;
        let second_boot = boot(pool).await;
        let shutting = tokio::spawn(shutdown(pool));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!shutting.is_finished(), "boots are in flight");
        drop((booting, second_boot));
        let exclusive = shutting.await.unwrap().expect("the shutdown gets the gate once the boots ended");
        let late_boot = tokio::spawn(boot(pool));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!late_boot.is_finished(), "a boot waits for the shutdown");
        drop(exclusive);
        late_boot.await.unwrap();
        // Other pools are not held up.
        let _other = tokio::time::timeout(Duration::from_secs(1), boot("other-pool")).await.unwrap();
    }
}
