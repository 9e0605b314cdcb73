//! The planner: a pure function from (the group as read, the roles known so
//! far, the rules, the request) to what may be removed and what may not.
//!
//! The safety of the service lives here. The planner never proposes a member
//! that was not requested, that is not in the group as read, that is protected,
//! whose roles are unknown while roles are checked, or whose removal would
//! leave the group below its minimum.

use std::collections::{HashMap, HashSet};

use super::{
    Blocked, GroupMember, GroupRules, GroupSnapshot, MemberId, MemberKind, Mode, Rule, Violation,
};

/// Roles looked up so far, by member.
pub type KnownRoles = HashMap<MemberId, Vec<String>>;

/// What the rules make of a request against one version of the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Members to remove, in the order requested.
    pub to_remove: Vec<MemberId>,
    /// Requested members the group does not hold.
    pub not_members: Vec<MemberId>,
    pub blocked: Vec<Blocked>,
    pub violations: Vec<Violation>,
    /// Members whose roles must be looked up before the plan is final. While
    /// this is not empty, `to_remove` is empty.
    pub needs_roles: Vec<MemberId>,
}

/// What to do with a final plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Remove `to_remove`.
    Remove,
    /// Nothing is left to remove and nothing was stopped by a rule.
    Done,
    /// A rule stopped the removal.
    Reject,
}

/// Plans `requested` (deduplicated, in request order) against `group`.
pub fn plan(
    requested: &[MemberId],
    group: &GroupSnapshot,
    rules: &GroupRules,
    roles: &KnownRoles,
    mode: Mode,
) -> Plan {
    let kinds: HashMap<&MemberId, MemberKind> = group
        .members
        .iter()
        .map(|member| (&member.id, member.kind))
        .collect();
    let mut plan = Plan::default();

    // Step 1: members that are absent or protected by id need no look-up.
    let mut seen = HashSet::new();
    let mut present = Vec::new();
    for member in requested.iter().filter(|member| seen.insert(*member)) {
        match kinds.get(member) {
            None => plan.not_members.push(member.clone()),
            Some(_) if rules.protects_member(member) => plan.blocked.push(Blocked {
                member: member.clone(),
                rule: Rule::ProtectedMember,
                detail: "the member is listed in protected_members".into(),
            }),
            Some(kind) => present.push((member, *kind)),
        }
    }

    // Step 2: how many members the group can lose and stay at its minimum.
    let count = group.members.len();
    let allowance = count.saturating_sub(rules.min_members);

    // Step 3: in all-or-nothing mode, a removal already stopped needs no roles.
    if mode == Mode::AllOrNothing {
        let blocked_by_id = !plan.blocked.is_empty();
        if present.len() > allowance {
            plan.violations
                .push(min_members_violation(count, present.len(), rules));
        }
        if blocked_by_id || !plan.violations.is_empty() {
            return plan;
        }
    }

    // Step 4: roles, asked only for members that would otherwise be removed.
    let mut accepted = Vec::new();
    for (member, kind) in present {
        let role_check = rules.checks_roles() && kind == MemberKind::User;
        let roles_of_member = roles.get(member);

        if role_check && roles_of_member.is_none() {
            let within_allowance = accepted.len() + plan.needs_roles.len() < allowance;
            if mode == Mode::AllOrNothing || within_allowance {
                plan.needs_roles.push(member.clone());
            } else {
                plan.blocked.push(kept_back(member, rules));
            }
            continue;
        }

        let protected_role = roles_of_member
            .filter(|_| role_check)
            .and_then(|held| rules.protected_role_among(held));
        if let Some(role) = protected_role {
            plan.blocked.push(Blocked {
                member: member.clone(),
                rule: Rule::ProtectedRole,
                detail: format!("the member holds the protected role {role:?}"),
            });
        } else if accepted.len() + plan.needs_roles.len() < allowance {
            accepted.push(member.clone());
        } else {
            plan.blocked.push(kept_back(member, rules));
        }
    }

    if !plan.needs_roles.is_empty() {
        plan.blocked
            .retain(|blocked| blocked.rule != Rule::MinMembers);
        return plan;
    }

    // Step 5: all-or-nothing removes nothing once anything is blocked.
    if mode == Mode::AllOrNothing && !plan.blocked.is_empty() {
        return plan;
    }
    plan.blocked
        .sort_by_key(|blocked| position(requested, &blocked.member));
    plan.to_remove = accepted;
    plan
}

impl Plan {
    /// The verdict of a final plan (one that needs no more roles).
    /// `already_removed` counts members removed by earlier PATCH cycles of the
    /// same removal, which make a best-effort removal a success.
    pub fn verdict(&self, mode: Mode, already_removed: usize) -> Verdict {
        if !self.violations.is_empty() {
            return Verdict::Reject;
        }
        if !self.to_remove.is_empty() {
            return Verdict::Remove;
        }
        let stopped = !self.blocked.is_empty();
        let anything_done = already_removed > 0 || !self.not_members.is_empty();
        match mode {
            Mode::AllOrNothing if stopped => Verdict::Reject,
            Mode::BestEffort if stopped && !anything_done => Verdict::Reject,
            _ => Verdict::Done,
        }
    }

    /// Members of `to_remove` in the group's answer, which lists the group
    /// after the PATCH: a member still there was not removed.
    pub fn still_present<'a>(
        members: &'a [MemberId],
        group_after: &[GroupMember],
    ) -> Vec<&'a MemberId> {
        let present: HashSet<&MemberId> = group_after.iter().map(|member| &member.id).collect();
        members
            .iter()
            .filter(|member| present.contains(member))
            .collect()
    }
}

fn min_members_violation(count: usize, removing: usize, rules: &GroupRules) -> Violation {
    Violation {
        rule: Rule::MinMembers,
        detail: format!(
            "removing {removing} of {count} members would leave {}, below the minimum of {}",
            count - removing.min(count),
            rules.min_members
        ),
    }
}

fn kept_back(member: &MemberId, rules: &GroupRules) -> Blocked {
    Blocked {
        member: member.clone(),
        rule: Rule::MinMembers,
        detail: format!(
            "kept to leave the group at least {} members",
            rules.min_members
        ),
    }
}

fn position(requested: &[MemberId], member: &MemberId) -> usize {
    requested
        .iter()
        .position(|m| m == member)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::removal::GroupRules;

    fn id(n: u8) -> MemberId {
        MemberId::parse(&format!("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b{n:02x}")).unwrap()
    }

    fn group(users: &[u8], nested: &[u8]) -> GroupSnapshot {
        let member = |n: &u8, kind| GroupMember { id: id(*n), kind };
        let members = users
            .iter()
            .map(|n| member(n, MemberKind::User))
            .chain(nested.iter().map(|n| member(n, MemberKind::Group)))
            .collect();
        GroupSnapshot {
            version: "\"1\"".into(),
            members,
        }
    }

    fn ids(ns: &[u8]) -> Vec<MemberId> {
        ns.iter().map(|n| id(*n)).collect()
    }

    fn rules(min_members: usize) -> GroupRules {
        GroupRules::for_test(min_members, &[], &[])
    }

    fn blocked_rules(plan: &Plan) -> Vec<(MemberId, Rule)> {
        plan.blocked
            .iter()
            .map(|b| (b.member.clone(), b.rule))
            .collect()
    }

    #[test]
    fn members_in_the_group_are_removed_and_absent_ones_reported() {
        let plan = plan(
            &ids(&[1, 9]),
            &group(&[1, 2, 3], &[]),
            &rules(1),
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert_eq!(plan.to_remove, ids(&[1]));
        assert_eq!(plan.not_members, ids(&[9]));
        assert_eq!(plan.verdict(Mode::AllOrNothing, 0), Verdict::Remove);
    }

    #[test]
    fn a_request_of_only_absent_members_is_done_without_removing() {
        let plan = plan(
            &ids(&[8, 9]),
            &group(&[1, 2], &[]),
            &rules(1),
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert!(plan.to_remove.is_empty());
        assert_eq!(plan.not_members, ids(&[8, 9]));
        assert_eq!(plan.verdict(Mode::AllOrNothing, 0), Verdict::Done);
    }

    #[test]
    fn a_protected_member_stops_an_all_or_nothing_removal() {
        let rules = GroupRules::for_test(1, &[id(2).as_str()], &["Master Admin"]);
        let plan = plan(
            &ids(&[1, 2]),
            &group(&[1, 2, 3], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert!(plan.to_remove.is_empty());
        assert_eq!(blocked_rules(&plan), vec![(id(2), Rule::ProtectedMember)]);
        assert!(
            plan.needs_roles.is_empty(),
            "no role look-up for a removal already stopped"
        );
        assert_eq!(plan.verdict(Mode::AllOrNothing, 0), Verdict::Reject);
    }

    #[test]
    fn best_effort_removes_around_a_protected_member() {
        let rules = GroupRules::for_test(1, &[id(2).as_str()], &[]);
        let plan = plan(
            &ids(&[1, 2]),
            &group(&[1, 2, 3], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert_eq!(plan.to_remove, ids(&[1]));
        assert_eq!(blocked_rules(&plan), vec![(id(2), Rule::ProtectedMember)]);
        assert_eq!(plan.verdict(Mode::BestEffort, 0), Verdict::Remove);
    }

    #[test]
    fn roles_are_asked_for_before_a_member_is_removed() {
        let rules = GroupRules::for_test(1, &[], &["Master Admin"]);
        let plan = plan(
            &ids(&[1, 2]),
            &group(&[1, 2, 3], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert!(plan.to_remove.is_empty());
        assert_eq!(plan.needs_roles, ids(&[1, 2]));
    }

    #[test]
    fn a_protected_role_blocks_whatever_its_case() {
        let rules = GroupRules::for_test(1, &[], &["Master Admin"]);
        let roles = KnownRoles::from([
            (id(1), vec!["employee".to_string()]),
            (id(2), vec!["MASTER admin".to_string()]),
        ]);
        let group = group(&[1, 2, 3], &[]);

        let strict = plan(&ids(&[1, 2]), &group, &rules, &roles, Mode::AllOrNothing);
        assert!(strict.to_remove.is_empty());
        assert_eq!(blocked_rules(&strict), vec![(id(2), Rule::ProtectedRole)]);
        assert_eq!(strict.verdict(Mode::AllOrNothing, 0), Verdict::Reject);

        let lenient = plan(&ids(&[1, 2]), &group, &rules, &roles, Mode::BestEffort);
        assert_eq!(lenient.to_remove, ids(&[1]));
        assert_eq!(blocked_rules(&lenient), vec![(id(2), Rule::ProtectedRole)]);
    }

    #[test]
    fn nested_groups_are_never_role_checked() {
        let rules = GroupRules::for_test(1, &[], &["Master Admin"]);
        let plan = plan(
            &ids(&[7]),
            &group(&[1, 2], &[7]),
            &rules,
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert!(plan.needs_roles.is_empty());
        assert_eq!(plan.to_remove, ids(&[7]));
    }

    #[test]
    fn all_or_nothing_refuses_to_go_below_the_minimum() {
        let plan = plan(
            &ids(&[1, 2, 3]),
            &group(&[1, 2, 3, 4], &[]),
            &rules(2),
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert!(plan.to_remove.is_empty());
        assert_eq!(plan.violations.len(), 1);
        assert_eq!(plan.violations[0].rule, Rule::MinMembers);
        assert_eq!(plan.verdict(Mode::AllOrNothing, 0), Verdict::Reject);
    }

    #[test]
    fn nested_groups_count_toward_the_minimum() {
        let plan = plan(
            &ids(&[1]),
            &group(&[1], &[7]),
            &rules(1),
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert_eq!(plan.to_remove, ids(&[1]));
    }

    #[test]
    fn best_effort_keeps_back_the_later_members_to_respect_the_minimum() {
        let plan = plan(
            &ids(&[3, 1, 2]),
            &group(&[1, 2, 3, 4], &[]),
            &rules(2),
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert_eq!(plan.to_remove, ids(&[3, 1]));
        assert_eq!(blocked_rules(&plan), vec![(id(2), Rule::MinMembers)]);
        assert!(plan.violations.is_empty());
    }

    #[test]
    fn best_effort_asks_only_for_the_roles_of_members_it_could_remove() {
        let rules = GroupRules::for_test(2, &[], &["Master Admin"]);
        let plan = plan(
            &ids(&[1, 2, 3]),
            &group(&[1, 2, 3, 4], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert_eq!(plan.needs_roles, ids(&[1, 2]));
        assert!(plan.to_remove.is_empty());
    }

    #[test]
    fn best_effort_that_can_remove_nobody_is_rejected() {
        let rules = GroupRules::for_test(2, &[id(1).as_str()], &[]);
        let plan = plan(
            &ids(&[1, 2]),
            &group(&[1, 2], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert!(plan.to_remove.is_empty());
        assert_eq!(
            blocked_rules(&plan),
            vec![(id(1), Rule::ProtectedMember), (id(2), Rule::MinMembers)]
        );
        assert_eq!(plan.verdict(Mode::BestEffort, 0), Verdict::Reject);
    }

    #[test]
    fn best_effort_with_blocked_and_absent_members_succeeds() {
        let rules = GroupRules::for_test(1, &[id(1).as_str()], &[]);
        let plan = plan(
            &ids(&[1, 9]),
            &group(&[1, 2], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert_eq!(plan.verdict(Mode::BestEffort, 0), Verdict::Done);
    }

    #[test]
    fn members_removed_by_an_earlier_cycle_make_a_best_effort_removal_a_success() {
        let rules = GroupRules::for_test(1, &[id(2).as_str()], &[]);
        let plan = plan(
            &ids(&[2]),
            &group(&[2, 3], &[]),
            &rules,
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert_eq!(plan.verdict(Mode::BestEffort, 0), Verdict::Reject);
        assert_eq!(plan.verdict(Mode::BestEffort, 1), Verdict::Done);
    }

    #[test]
    fn the_planner_never_proposes_an_unrequested_or_absent_member() {
        let plan = plan(
            &ids(&[1, 5]),
            &group(&[1, 2, 3, 4], &[]),
            &rules(0),
            &KnownRoles::new(),
            Mode::BestEffort,
        );

        assert_eq!(plan.to_remove, ids(&[1]));
        assert_eq!(plan.not_members, ids(&[5]));
    }

    #[test]
    fn a_member_requested_twice_is_planned_once() {
        let plan = plan(
            &ids(&[1, 1, 9, 9]),
            &group(&[1, 2], &[]),
            &rules(1),
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert_eq!(plan.to_remove, ids(&[1]));
        assert_eq!(plan.not_members, ids(&[9]));
    }

    #[test]
    fn a_minimum_of_zero_lets_the_group_be_emptied() {
        let plan = plan(
            &ids(&[1, 2]),
            &group(&[1, 2], &[]),
            &rules(0),
            &KnownRoles::new(),
            Mode::AllOrNothing,
        );

        assert_eq!(plan.to_remove, ids(&[1, 2]));
    }

    #[test]
    fn the_answer_tells_which_members_are_still_present() {
        let after = group(&[2, 3], &[]).members;
        let requested = ids(&[1, 2]);
        let still = Plan::still_present(&requested, &after);

        assert_eq!(still, vec![&id(2)]);
    }
}
