//! A node's role rules, without I/O or clock: what to do after each heartbeat, given what it
//! read of the deployment. The node's thread (`super::Node`) does the I/O and follows the
//! steps; tests drive the same rules with views they make.

use crate::store::postgres::{ClusterView, NODE_EXPIRY};

#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    Follower,
    Leader { term: i64 },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Leader { .. } => "leader",
        }
    }
}

/// What the node's thread does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Try to take the writer lease (free or expired).
    TakeLease,
    /// The lease was taken: make the store commit, then start the scheduler.
    Promote { term: i64 },
    /// Log that the deployment's leader changed.
    Announce(String),
    /// Stop serving: continuing could serve reads that miss data or commit nothing. A
    /// supervisor starts the node again, as a follower that reads from a fresh state.
    Exit(String),
}

pub struct RoleCore {
    pub role: Role,
    /// The leader last announced: (holder, term).
    leader: Option<(String, i64)>,
    /// Heartbeats that failed in a row.
    failures: u32,
}

impl RoleCore {
    pub fn new(role: Role) -> Self {
        RoleCore {
            role,
            leader: None,
            failures: 0,
        }
    }

    /// After a heartbeat that wrote this node's row and read `view`; `lost` when this node's
    /// lease renewal found another holder.
    pub fn on_heartbeat(&mut self, view: &ClusterView, lost: bool) -> Vec<Step> {
        self.failures = 0;
        let mut steps = Vec::new();
        if let Some(exit) = self.exit_if_lost(lost) {
            return vec![exit];
        }
        if self.role == Role::Follower {
            let away = view.away_seconds;
            if away.is_none_or(|s| s > NODE_EXPIRY.as_secs_f64()) {
                let shown = away.map_or("its row was gone".to_owned(), |s| format!("{s:.0} s"));
                return vec![Step::Exit(format!(
                    "this node was out of touch with the database for longer than {} s ({shown}): garbage collection may have deleted what it was reading; start it again",
                    NODE_EXPIRY.as_secs()
                ))];
            }
        }
        if let Some((holder, term, _)) = &view.lease {
            if self.leader.as_ref() != Some(&(holder.clone(), *term)) {
                let address = view
                    .nodes
                    .iter()
                    .find(|n| &n.id == holder)
                    .map(|n| n.address.as_str())
                    .filter(|a| !a.is_empty())
                    .unwrap_or("address not known yet");
                steps.push(Step::Announce(format!(
                    "the deployment's leader is {holder} at {address} (term {term})"
                )));
                self.leader = Some((holder.clone(), *term));
            }
        }
        let expired = view.lease.as_ref().is_none_or(|(_, _, left)| *left < 0.0);
        if self.role == Role::Follower && expired {
            steps.push(Step::TakeLease);
        }
        steps
    }

    /// After a heartbeat that could not reach the database.
    pub fn on_heartbeat_failed(&mut self, lost: bool) -> Vec<Step> {
        self.failures += 1;
        self.exit_if_lost(lost).into_iter().collect()
    }

    /// Heartbeats that failed in a row (a warning is logged at the first).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After an attempt at the lease: `Some(term)` if taken.
    pub fn on_lease_attempt(&mut self, taken: Option<i64>) -> Vec<Step> {
        match (taken, &self.role) {
            (Some(term), Role::Follower) => {
                self.role = Role::Leader { term };
                vec![Step::Promote { term }]
            }
            _ => Vec::new(),
        }
    }

    fn exit_if_lost(&self, lost: bool) -> Option<Step> {
        match (&self.role, lost) {
            (Role::Leader { term }, true) => Some(Step::Exit(format!(
                "another node took the writer lease (this node's term {term} ended): it commits nothing more; start it again to follow the new leader"
            ))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::NodeRow;

    fn view(lease: Option<(&str, i64, f64)>, away: Option<f64>) -> ClusterView {
        ClusterView {
            lease: lease.map(|(h, t, l)| (h.to_owned(), t, l)),
            nodes: vec![NodeRow {
                id: "a".into(),
                address: "http://127.0.0.1:1".into(),
                role: "leader".into(),
                applied: 5,
                behind: 0,
                seen_seconds_ago: 0.1,
                started_seconds_ago: 9.0,
            }],
            away_seconds: away,
        }
    }

    #[test]
    fn a_follower_takes_an_expired_or_missing_lease_only() {
        for (lease, take) in [
            (Some(("a", 1, 4.0)), false),
            (Some(("a", 1, -0.5)), true),
            (None, true),
        ] {
            let mut core = RoleCore::new(Role::Follower);
            let steps = core.on_heartbeat(&view(lease, Some(1.0)), false);
            assert_eq!(
                steps.contains(&Step::TakeLease),
                take,
                "{lease:?}: {steps:?}"
            );
        }
        let mut leader = RoleCore::new(Role::Leader { term: 3 });
        let steps = leader.on_heartbeat(&view(Some(("me", 3, -1.0)), Some(1.0)), false);
        assert!(
            !steps.contains(&Step::TakeLease),
            "a leader does not take: {steps:?}"
        );
    }

    #[test]
    fn taking_the_lease_promotes_once() {
        let mut core = RoleCore::new(Role::Follower);
        assert_eq!(core.on_lease_attempt(None), vec![]);
        assert_eq!(core.role, Role::Follower);
        assert_eq!(
            core.on_lease_attempt(Some(4)),
            vec![Step::Promote { term: 4 }]
        );
        assert_eq!(core.role, Role::Leader { term: 4 });
        assert_eq!(core.on_lease_attempt(Some(4)), vec![]);
    }

    #[test]
    fn a_leader_that_lost_its_lease_exits() {
        let mut core = RoleCore::new(Role::Leader { term: 2 });
        let steps = core.on_heartbeat(&view(Some(("b", 3, 9.0)), Some(1.0)), true);
        assert!(
            matches!(&steps[..], [Step::Exit(m)] if m.contains("term 2 ended")),
            "{steps:?}"
        );
        let mut core = RoleCore::new(Role::Leader { term: 2 });
        assert!(matches!(
            &core.on_heartbeat_failed(true)[..],
            [Step::Exit(_)]
        ));
        // A follower never held a lease to lose.
        let mut follower = RoleCore::new(Role::Follower);
        assert_eq!(follower.on_heartbeat_failed(true), vec![]);
        assert_eq!(follower.failures(), 1);
    }

    #[test]
    fn a_follower_away_longer_than_the_expiry_exits() {
        let expiry = NODE_EXPIRY.as_secs_f64();
        for (away, exits) in [
            (Some(1.0), false),
            (Some(expiry - 1.0), false),
            (Some(expiry + 1.0), true),
            (None, true),
        ] {
            let mut core = RoleCore::new(Role::Follower);
            let steps = core.on_heartbeat(&view(Some(("a", 1, 5.0)), away), false);
            assert_eq!(
                matches!(&steps[..], [Step::Exit(_)]),
                exits,
                "{away:?}: {steps:?}"
            );
        }
        // The leader's own horizon is the collection's: it need not exit.
        let mut leader = RoleCore::new(Role::Leader { term: 1 });
        let steps = leader.on_heartbeat(&view(Some(("a", 1, 5.0)), Some(expiry * 3.0)), false);
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Exit(_))),
            "{steps:?}"
        );
    }

    #[test]
    fn each_change_of_leader_is_announced_once() {
        let mut core = RoleCore::new(Role::Follower);
        let announced = |steps: Vec<Step>| {
            steps
                .into_iter()
                .filter_map(|s| match s {
                    Step::Announce(m) => Some(m),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let first = announced(core.on_heartbeat(&view(Some(("a", 1, 5.0)), Some(1.0)), false));
        assert_eq!(first.len(), 1);
        assert!(
            first[0].contains("a at http://127.0.0.1:1 (term 1)"),
            "{first:?}"
        );
        assert!(
            announced(core.on_heartbeat(&view(Some(("a", 1, 4.0)), Some(1.0)), false)).is_empty()
        );
        let next = announced(core.on_heartbeat(&view(Some(("b", 2, 9.0)), Some(1.0)), false));
        assert!(
            next[0].contains("b at address not known yet (term 2)"),
            "{next:?}"
        );
    }
}
