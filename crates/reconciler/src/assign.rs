//! Tenant placement: tenants → ingesters and tenants → compactors. Pure functions over plain
//! data; the planner feeds them the current state read from the Ingester/Compactor CRs.
//!
//! # Ingesters (Whizard `resources/tenant/ingestor.go`)
//! * An *exclusive* tenant (label `monitoring.whizard.io/exclusive=true`) gets an ingester of
//!   its own, named `<prefix>-exclusive-<tenant>`.
//! * A shared tenant keeps the auto ingester that already holds it. Otherwise it goes to the
//!   first `<prefix>-auto-<i>` (`i = 0, 1, ...`) that has fewer than `cap` tenants, creating the
//!   first missing index (first fit, lowest index, fills holes). New tenants are placed in
//!   sorted order so the result does not depend on input order.
//! * Stability: a tenant that stays never moves; adding or removing a tenant changes only that
//!   tenant's ingester. A tenant found in two ingesters (corrupt state) stays in the first by
//!   name. A tenant whose exclusivity changed is moved (Whizard's "reset check").
//! * An ingester whose tenant list becomes empty is kept, marked deleting at
//!   `now + retention`, and dropped once `now >= deleting_at`. Giving it a tenant again (first
//!   fit may pick it) cancels the removal.
//!
//! # Compactors (Whizard `resources/tenant/compactor.go`)
//! Only tenants on object storage. Same first-fit placement with `cap` (10) over
//! `<prefix>-<i>`; exclusive tenants get `<prefix>-exclusive-<tenant>`; an emptied compactor is
//! removed at once (its blocks are in object storage; nothing is lost).

use std::collections::{BTreeMap, BTreeSet};

use super::naming::{tenant_object_name, MAX_SLOT_NAME};

/// A tenant to place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TenantReq {
    pub id: String,
    pub exclusive: bool,
}

/// The placement state of one ingester (or compactor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub tenants: Vec<String>,
    pub exclusive: bool,
    /// Unix seconds after which an empty slot is removed.
    pub deleting_at: Option<u64>,
}

pub fn auto_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-auto-{i}")
}

/// `<prefix>-exclusive-<tenant>`, or for a tenant id that is not a DNS label (or too long) a
/// sanitised form with a hash suffix, at most [`MAX_SLOT_NAME`] characters
/// (see [`tenant_object_name`]).
pub fn exclusive_name(prefix: &str, tenant: &str) -> String {
    tenant_object_name(&format!("{prefix}-exclusive"), tenant, MAX_SLOT_NAME)
}

/// How empty slots are treated.
#[derive(Debug, Clone, Copy)]
pub enum Emptied {
    /// Keep for `retention` seconds after it became empty, then drop.
    KeepFor { retention: u64, now: u64 },
    /// Drop at once.
    Drop,
}

/// Places `tenants` onto slots named `<prefix>-auto-<i>` / `<prefix>-exclusive-<t>`, starting
/// from `existing`. Returns the new slots sorted by name. See the module docs.
pub fn assign(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    cap: usize,
    emptied: Emptied,
    auto: fn(&str, usize) -> String,
) -> Vec<Slot> {
    assign_holding(
        prefix,
        existing,
        tenants,
        &BTreeSet::new(),
        cap,
        emptied,
        auto,
    )
}

/// [`assign`], where the tenants in `held` (whose Tenant CR is currently invalid) stay in the
/// existing slots that hold them and are never placed anew: a broken Tenant moves nothing and
/// empties nothing until it is fixed or deleted.
pub fn assign_holding(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    held: &BTreeSet<String>,
    cap: usize,
    emptied: Emptied,
    auto: fn(&str, usize) -> String,
) -> Vec<Slot> {
    let cap = cap.max(1);
    let wanted: BTreeMap<&str, bool> = tenants
        .iter()
        .map(|t| (t.id.as_str(), t.exclusive))
        .collect();
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    let mut placed: BTreeSet<String> = BTreeSet::new();

    let mut sorted: Vec<&Slot> = existing.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for s in sorted {
        if slots.contains_key(&s.name) {
            continue;
        }
        let mut kept = Vec::new();
        for t in &s.tenants {
            let Some(&excl) = wanted.get(t.as_str()) else {
                if held.contains(t) && placed.insert(t.clone()) {
                    kept.push(t.clone());
                }
                continue;
            };
            let right_kind = if excl {
                s.name == exclusive_name(prefix, t)
            } else {
                !s.exclusive
            };
            if right_kind && placed.insert(t.clone()) {
                kept.push(t.clone());
            }
        }
        slots.insert(
            s.name.clone(),
            Slot {
                name: s.name.clone(),
                tenants: kept,
                exclusive: s.exclusive,
                deleting_at: s.deleting_at,
            },
        );
    }

    let mut new: Vec<&TenantReq> = tenants.iter().filter(|t| !placed.contains(&t.id)).collect();
    new.sort();
    new.dedup_by(|a, b| a.id == b.id);
    for t in new {
        if t.exclusive {
            let name = exclusive_name(prefix, &t.id);
            let slot = slots.entry(name.clone()).or_insert_with(|| Slot {
                name,
                tenants: Vec::new(),
                exclusive: true,
                deleting_at: None,
            });
            slot.tenants.push(t.id.clone());
        } else {
            let mut i = 0;
            loop {
                let name = auto(prefix, i);
                match slots.get_mut(&name) {
                    Some(slot) if !slot.exclusive && slot.tenants.len() < cap => {
                        slot.tenants.push(t.id.clone());
                        break;
                    }
                    Some(_) => i += 1,
                    None => {
                        slots.insert(
                            name.clone(),
                            Slot {
                                name,
                                tenants: vec![t.id.clone()],
                                exclusive: false,
                                deleting_at: None,
                            },
                        );
                        break;
                    }
                }
            }
        }
    }

    slots
        .into_values()
        .filter_map(|mut s| {
            if !s.tenants.is_empty() {
                s.deleting_at = None;
                return Some(s);
            }
            match emptied {
                Emptied::Drop => None,
                Emptied::KeepFor { retention, now } => {
                    let at = *s.deleting_at.get_or_insert(now.saturating_add(retention));
                    (now < at).then_some(s)
                }
            }
        })
        .collect()
}

/// Ingester placement (see module docs).
pub fn assign_ingesters(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    cap: usize,
    retention_secs: u64,
    now: u64,
) -> Vec<Slot> {
    assign_ingesters_holding(
        prefix,
        existing,
        tenants,
        &BTreeSet::new(),
        cap,
        retention_secs,
        now,
    )
}

/// [`assign_ingesters`] with tenants `held` in place (see [`assign_holding`]).
pub fn assign_ingesters_holding(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    held: &BTreeSet<String>,
    cap: usize,
    retention_secs: u64,
    now: u64,
) -> Vec<Slot> {
    assign_holding(
        prefix,
        existing,
        tenants,
        held,
        cap,
        Emptied::KeepFor {
            retention: retention_secs,
            now,
        },
        auto_name,
    )
}

fn compactor_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

/// Compactor placement (see module docs).
pub fn assign_compactors(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    cap: usize,
) -> Vec<Slot> {
    assign_compactors_holding(prefix, existing, tenants, &BTreeSet::new(), cap)
}

/// [`assign_compactors`] with tenants `held` in place (see [`assign_holding`]).
pub fn assign_compactors_holding(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    held: &BTreeSet<String>,
    cap: usize,
) -> Vec<Slot> {
    assign_holding(
        prefix,
        existing,
        tenants,
        held,
        cap,
        Emptied::Drop,
        compactor_name,
    )
}

/// The earliest pending removal among `slots`, to requeue at.
pub fn next_deletion(slots: &[Slot]) -> Option<u64> {
    slots.iter().filter_map(|s| s.deleting_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shared(ids: &[&str]) -> Vec<TenantReq> {
        ids.iter()
            .map(|i| TenantReq {
                id: i.to_string(),
                exclusive: false,
            })
            .collect()
    }

    fn layout(slots: &[Slot]) -> Vec<(String, Vec<String>)> {
        slots
            .iter()
            .map(|s| (s.name.clone(), s.tenants.clone()))
            .collect()
    }

    const H3: u64 = 3 * 3600;

    #[test]
    fn first_fit_with_cap_three() {
        let s = assign_ingesters("svc-local", &[], &shared(&["a", "b", "c", "d"]), 3, H3, 0);
        assert_eq!(
            layout(&s),
            vec![
                (
                    "svc-local-auto-0".into(),
                    vec!["a".into(), "b".into(), "c".into()]
                ),
                ("svc-local-auto-1".into(), vec!["d".into()]),
            ]
        );
    }

    #[test]
    fn exclusive_tenant_alone() {
        let mut t = shared(&["a", "b"]);
        t.push(TenantReq {
            id: "big".into(),
            exclusive: true,
        });
        let s = assign_ingesters("p", &[], &t, 3, H3, 0);
        assert_eq!(
            layout(&s),
            vec![
                ("p-auto-0".into(), vec!["a".into(), "b".into()]),
                ("p-exclusive-big".into(), vec!["big".into()]),
            ]
        );
        assert!(s[1].exclusive);
    }

    #[test]
    fn removal_keeps_then_drops_and_readd_cancels() {
        let s0 = assign_ingesters("p", &[], &shared(&["a", "b", "c", "d"]), 3, H3, 100);
        // d leaves: auto-1 empties and is scheduled for deletion at 100+3h.
        let s1 = assign_ingesters("p", &s0, &shared(&["a", "b", "c"]), 3, H3, 200);
        assert_eq!(s1[1].tenants, Vec::<String>::new());
        assert_eq!(s1[1].deleting_at, Some(200 + H3));
        // Still there just before the deadline, with the same deadline.
        let s2 = assign_ingesters("p", &s1, &shared(&["a", "b", "c"]), 3, H3, 200 + H3 - 1);
        assert_eq!(s2[1].deleting_at, Some(200 + H3));
        assert_eq!(next_deletion(&s2), Some(200 + H3));
        // Re-adding a tenant cancels the removal (first fit picks the empty auto-1).
        let s3 = assign_ingesters("p", &s2, &shared(&["a", "b", "c", "e"]), 3, H3, 300);
        assert_eq!(s3[1].name, "p-auto-1");
        assert_eq!(s3[1].tenants, vec!["e".to_string()]);
        assert_eq!(s3[1].deleting_at, None);
        // Gone at the deadline.
        let s4 = assign_ingesters("p", &s2, &shared(&["a", "b", "c"]), 3, H3, 200 + H3);
        assert_eq!(s4.len(), 1);
    }

    #[test]
    fn holes_are_filled_lowest_index_first() {
        let existing = vec![
            Slot {
                name: "p-auto-0".into(),
                tenants: vec!["a".into(), "b".into(), "c".into()],
                exclusive: false,
                deleting_at: None,
            },
            Slot {
                name: "p-auto-2".into(),
                tenants: vec!["x".into()],
                exclusive: false,
                deleting_at: None,
            },
        ];
        let s = assign_ingesters(
            "p",
            &existing,
            &shared(&["a", "b", "c", "x", "n"]),
            3,
            H3,
            0,
        );
        assert_eq!(s[1].name, "p-auto-1");
        assert_eq!(s[1].tenants, vec!["n".to_string()]);
    }

    #[test]
    fn exclusivity_change_moves_tenant() {
        let s0 = assign_ingesters("p", &[], &shared(&["a", "b"]), 3, H3, 0);
        let t = vec![
            TenantReq {
                id: "a".into(),
                exclusive: true,
            },
            TenantReq {
                id: "b".into(),
                exclusive: false,
            },
        ];
        let s1 = assign_ingesters("p", &s0, &t, 3, H3, 0);
        assert_eq!(
            layout(&s1),
            vec![
                ("p-auto-0".into(), vec!["b".into()]),
                ("p-exclusive-a".into(), vec!["a".into()]),
            ]
        );
    }

    #[test]
    fn duplicate_in_state_is_resolved() {
        let existing = vec![
            Slot {
                name: "p-auto-0".into(),
                tenants: vec!["a".into()],
                exclusive: false,
                deleting_at: None,
            },
            Slot {
                name: "p-auto-1".into(),
                tenants: vec!["a".into(), "b".into()],
                exclusive: false,
                deleting_at: None,
            },
        ];
        let s = assign_ingesters("p", &existing, &shared(&["a", "b"]), 3, H3, 0);
        assert_eq!(
            layout(&s),
            vec![
                ("p-auto-0".into(), vec!["a".into()]),
                ("p-auto-1".into(), vec!["b".into()]),
            ]
        );
    }

    #[test]
    fn compactors_cap_ten_and_drop_empty() {
        let ids: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        let s = assign_compactors("svc-s3", &[], &shared(&refs), 10);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "svc-s3-0");
        assert_eq!(s[0].tenants.len(), 10);
        assert_eq!(s[1].tenants, vec!["t10".to_string(), "t11".to_string()]);
        let s2 = assign_compactors("svc-s3", &s, &shared(&refs[..10]), 10);
        assert_eq!(s2.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u8, bool),
        Remove(u8),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..30, proptest::bool::weighted(0.15)).prop_map(|(t, e)| Op::Add(t, e)),
            2 => (0u8..30).prop_map(Op::Remove),
            1 => (0u64..4 * 3600).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Random add/remove/time sequences: no tenant twice, caps respected, exclusive tenants
        /// alone, every tenant placed, untouched tenants never move, removal timing exact.
        #[test]
        fn ingester_invariants(ops in proptest::collection::vec(op(), 1..60), cap in 1usize..5) {
            let mut tenants: BTreeMap<String, bool> = BTreeMap::new();
            let mut slots: Vec<Slot> = Vec::new();
            let mut now = 1_000u64;
            for op in ops {
                let mut changed: Option<String> = None;
                match op {
                    Op::Add(t, e) => {
                        let id = format!("t{t}");
                        if tenants.get(&id) != Some(&e) { changed = Some(id.clone()); }
                        tenants.insert(id, e);
                    }
                    Op::Remove(t) => { let id = format!("t{t}"); tenants.remove(&id); changed = Some(id); }
                    Op::Tick(d) => now += d,
                }
                let reqs: Vec<TenantReq> = tenants.iter()
                    .map(|(id, e)| TenantReq { id: id.clone(), exclusive: *e }).collect();
                let before: BTreeMap<String, String> = slots.iter()
                    .flat_map(|s| s.tenants.iter().map(move |t| (t.clone(), s.name.clone()))).collect();
                let next = assign_ingesters("p", &slots, &reqs, cap, H3, now);

                let mut seen: BTreeMap<String, String> = BTreeMap::new();
                for s in &next {
                    prop_assert!(s.tenants.len() <= cap || s.exclusive);
                    if s.exclusive { prop_assert!(s.tenants.len() <= 1); }
                    for t in &s.tenants {
                        prop_assert!(seen.insert(t.clone(), s.name.clone()).is_none(), "{} twice", t);
                        prop_assert_eq!(tenants[t], s.exclusive);
                    }
                    if s.tenants.is_empty() {
                        let at = s.deleting_at.unwrap();
                        prop_assert!(now < at && at <= now + H3);
                    } else {
                        prop_assert!(s.deleting_at.is_none());
                    }
                }
                prop_assert_eq!(seen.len(), tenants.len());
                for (t, name) in &before {
                    if Some(t) != changed.as_ref() && tenants.contains_key(t) {
                        prop_assert_eq!(&seen[t], name, "{} moved", t);
                    }
                }
                // Emptied slots that expired are gone.
                for s in &slots {
                    if let Some(at) = s.deleting_at {
                        if now >= at && !next.iter().any(|n| n.name == s.name && !n.tenants.is_empty()) {
                            prop_assert!(!next.iter().any(|n| n.name == s.name));
                        }
                    }
                }
                slots = next;
            }
        }

        /// Input order does not matter.
        #[test]
        fn order_independent(mut ids in proptest::collection::btree_set("[a-f]{1,3}", 0..15)
                                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
                             seed in any::<u64>()) {
            let reqs: Vec<TenantReq> = ids.iter().map(|i| TenantReq { id: i.clone(), exclusive: false }).collect();
            let a = assign_ingesters("p", &[], &reqs, 3, H3, 0);
            let n = ids.len().max(1);
            ids.rotate_left((seed as usize) % n);
            let reqs2: Vec<TenantReq> = ids.iter().map(|i| TenantReq { id: i.clone(), exclusive: false }).collect();
            let b = assign_ingesters("p", &[], &reqs2, 3, H3, 0);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn compactor_invariants(ops in proptest::collection::vec(op(), 1..60)) {
            let mut tenants: BTreeSet<String> = BTreeSet::new();
            let mut slots: Vec<Slot> = Vec::new();
            for op in ops {
                match op {
                    Op::Add(t, _) => { tenants.insert(format!("t{t}")); }
                    Op::Remove(t) => { tenants.remove(&format!("t{t}")); }
                    Op::Tick(_) => {}
                }
                let reqs = tenants.iter().map(|i| TenantReq { id: i.clone(), exclusive: false }).collect::<Vec<_>>();
                let next = assign_compactors("c", &slots, &reqs, 10);
                let mut count = 0;
                for s in &next {
                    prop_assert!(!s.tenants.is_empty() && s.tenants.len() <= 10);
                    count += s.tenants.len();
                }
                prop_assert_eq!(count, tenants.len());
                slots = next;
            }
        }
    }
}
