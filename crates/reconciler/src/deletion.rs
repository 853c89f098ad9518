//! Blocks of removed tenants: when they are due for deletion. Pure functions over plain data.
//!
//! A tenant is *removed from a storage* when a managed Compactor of the Service still lists it
//! but no Tenant CR places it on that storage any more (deleted CR, or moved to other storage).
//! The planner records the removal with a deadline, `removed_at + retention`, where retention
//! is the longest of the compactor's raw/5m/1h retentions (and at least the ingester retention,
//! so the last blocks the ingester ships are covered). Unlimited retention (all three `0`)
//! means "keep forever": nothing is recorded.
//!
//! Records live in the ConfigMap `<svc>-tenant-deletions` (applied before the Compactors are
//! changed, so a crash between the two never loses a removal), so a restarted reconciler
//! continues where it left off. Once `now >= delete_at`, a deletion Job runs for the record; its
//! success drops the record (and the Job is pruned). A tenant placed on the same storage again
//! cancels the record (and a running Job is pruned with it). A failed Job is kept, so that its
//! logs can be read; deleting it makes the reconciler start a new one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One pending deletion: the blocks of `tenant` in `storage` (`<ns>.<name>`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct PendingDeletion {
    pub tenant: String,
    pub storage: String,
    /// Unix seconds when the removal was noticed.
    pub removed_at: u64,
    /// Unix seconds from which the blocks are deleted.
    pub delete_at: u64,
}

/// What the cluster says about a deletion Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// The outcome of [`plan_deletions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletionPlan {
    /// Records to keep (sorted): the new state.
    pub pending: Vec<PendingDeletion>,
    /// Records whose Job should exist now (a subset of `pending`).
    pub due: Vec<PendingDeletion>,
    /// Earliest future deadline: requeue then.
    pub next_deadline: Option<u64>,
}

/// Combines the stored records with newly noticed removals.
///
/// * `stored`: records read back from the cluster;
/// * `removed`: removals noticed in this run (a stored record of the same tenant and storage
///   wins, so its deadline never moves);
/// * `present`: `(tenant, storage)` pairs of the current tenants (cancel matching records);
/// * `jobs`: state of existing deletion Jobs by `(tenant, storage)` (read from their
///   annotations, so a Job renamed by a newer reconciler still counts).
pub fn plan_deletions(
    stored: &[PendingDeletion],
    removed: &[PendingDeletion],
    present: &BTreeSet<(String, String)>,
    jobs: &BTreeMap<(String, String), JobState>,
    now: u64,
) -> DeletionPlan {
    let mut by_key: BTreeMap<(String, String), PendingDeletion> = BTreeMap::new();
    for r in stored.iter().chain(removed) {
        by_key
            .entry((r.tenant.clone(), r.storage.clone()))
            .or_insert_with(|| r.clone());
    }
    let mut plan = DeletionPlan::default();
    for (key, r) in by_key {
        if present.contains(&key) {
            continue; // re-added: cancelled
        }
        if now < r.delete_at {
            plan.next_deadline = Some(
                plan.next_deadline
                    .map_or(r.delete_at, |d| d.min(r.delete_at)),
            );
            plan.pending.push(r);
            continue;
        }
        if jobs.get(&key) == Some(&JobState::Succeeded) {
            continue; // done: drop the record; the Job is pruned
        }
        plan.due.push(r.clone());
        plan.pending.push(r);
    }
    plan
}

/// The deadline for a removal at `now`: `None` when the retention is unlimited.
pub fn deadline(now: u64, compactor_retention: &[u64], ingester_retention: u64) -> Option<u64> {
    let longest = compactor_retention.iter().copied().max().unwrap_or(0);
    if longest == 0 {
        return None;
    }
    Some(now.saturating_add(longest.max(ingester_retention)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: &str, removed_at: u64, delete_at: u64) -> PendingDeletion {
        PendingDeletion {
            tenant: t.into(),
            storage: "ns.s3".into(),
            removed_at,
            delete_at,
        }
    }

    fn run(
        stored: &[PendingDeletion],
        removed: &[PendingDeletion],
        present: &[&str],
        jobs: &[(&str, JobState)],
        now: u64,
    ) -> DeletionPlan {
        let present = present
            .iter()
            .map(|t| (t.to_string(), "ns.s3".to_string()))
            .collect();
        let jobs = jobs
            .iter()
            .map(|(t, s)| ((t.to_string(), "ns.s3".to_string()), *s))
            .collect();
        plan_deletions(stored, removed, &present, &jobs, now)
    }

    #[test]
    fn deadline_is_longest_retention_at_least_ingester() {
        assert_eq!(deadline(100, &[10, 50, 20], 3), Some(150));
        assert_eq!(deadline(100, &[1, 2, 0], 30), Some(130));
        assert_eq!(deadline(100, &[0, 0, 0], 30), None);
    }

    #[test]
    fn new_removal_is_recorded_and_not_due() {
        let p = run(&[], &[rec("a", 10, 110)], &[], &[], 10);
        assert_eq!(p.pending, vec![rec("a", 10, 110)]);
        assert!(p.due.is_empty());
        assert_eq!(p.next_deadline, Some(110));
    }

    #[test]
    fn stored_record_keeps_its_deadline() {
        // Noticed again later (e.g. the Compactor update failed): the first deadline stays.
        let p = run(&[rec("a", 10, 110)], &[rec("a", 50, 150)], &[], &[], 50);
        assert_eq!(p.pending, vec![rec("a", 10, 110)]);
    }

    #[test]
    fn due_at_deadline_until_job_succeeds() {
        let stored = [rec("a", 10, 110)];
        assert!(run(&stored, &[], &[], &[], 109).due.is_empty());
        let p = run(&stored, &[], &[], &[], 110);
        assert_eq!(p.due, stored.to_vec());
        assert_eq!(p.next_deadline, None);
        let p = run(&stored, &[], &[], &[("a", JobState::Running)], 200);
        assert_eq!(p.due, stored.to_vec());
        let p = run(&stored, &[], &[], &[("a", JobState::Failed)], 200);
        assert_eq!(p.due, stored.to_vec(), "a failed Job is kept");
        let p = run(&stored, &[], &[], &[("a", JobState::Succeeded)], 200);
        assert_eq!(p, DeletionPlan::default());
    }

    #[test]
    fn re_adding_cancels_before_and_after_deadline() {
        let stored = [rec("a", 10, 110), rec("b", 10, 110)];
        let p = run(&stored, &[], &["a"], &[], 50);
        assert_eq!(p.pending, vec![rec("b", 10, 110)]);
        let p = run(&stored, &[], &["b"], &[("b", JobState::Running)], 500);
        assert_eq!(p.pending, vec![rec("a", 10, 110)]);
        assert_eq!(p.due, vec![rec("a", 10, 110)]);
    }

    #[test]
    fn other_storage_is_not_a_cancel() {
        let present: BTreeSet<_> = [("a".to_string(), "ns.other".to_string())].into();
        let p = plan_deletions(&[rec("a", 10, 110)], &[], &present, &BTreeMap::new(), 20);
        assert_eq!(p.pending.len(), 1);
    }
}
