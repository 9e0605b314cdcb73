//! The configured rules, resolved for one group.

use std::collections::{HashMap, HashSet};

use crate::config::ConstraintSettings;

use super::{GroupId, MemberId};

/// Every rule of the configuration, global and per group.
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    global: GroupRules,
    protected_groups: HashSet<String>,
    overrides: HashMap<String, Override>,
}

#[derive(Debug, Clone, Default)]
struct Override {
    min_members: Option<usize>,
    max_removals_per_request: Option<usize>,
    protected_members: Vec<String>,
    protected_roles: Vec<String>,
}

/// The rules that apply to one group, overrides merged in: numbers replace the
/// global ones, lists add to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRules {
    pub min_members: usize,
    pub max_removals_per_request: usize,
    pub group_protected: bool,
    protected_members: HashSet<String>,
    /// Lower case: role names compare without regard to case.
    protected_roles: HashSet<String>,
}

impl RuleBook {
    pub fn new(settings: &ConstraintSettings) -> RuleBook {
        let global = GroupRules {
            min_members: settings.min_members,
            max_removals_per_request: settings.max_removals_per_request,
            group_protected: false,
            protected_members: lower_all(&settings.protected_members),
            protected_roles: lower_all(&settings.protected_roles),
        };
        let overrides = settings
            .groups
            .iter()
            .map(|(id, group)| {
                let entry = Override {
                    min_members: group.min_members,
                    max_removals_per_request: group.max_removals_per_request,
                    protected_members: group.protected_members.clone(),
                    protected_roles: group.protected_roles.clone(),
                };
                (id.to_ascii_lowercase(), entry)
            })
            .collect();

        RuleBook {
            global,
            protected_groups: lower_all(&settings.protected_groups),
            overrides,
        }
    }

    pub fn for_group(&self, group: &GroupId) -> GroupRules {
        let mut rules = self.global.clone();
        rules.group_protected = self.protected_groups.contains(group.as_str());

        if let Some(entry) = self.overrides.get(group.as_str()) {
            rules.min_members = entry.min_members.unwrap_or(rules.min_members);
            rules.max_removals_per_request = entry
                .max_removals_per_request
                .unwrap_or(rules.max_removals_per_request);
            rules
                .protected_members
                .extend(lower_all(&entry.protected_members));
            rules
                .protected_roles
                .extend(lower_all(&entry.protected_roles));
        }
        rules
    }
}

impl GroupRules {
    pub fn protects_member(&self, member: &MemberId) -> bool {
        self.protected_members.contains(member.as_str())
    }

    /// The first protected role among `roles`, if any.
    pub fn protected_role_among<'a>(&self, roles: &'a [String]) -> Option<&'a str> {
        roles
            .iter()
            .find(|role| self.protected_roles.contains(&role.to_lowercase()))
            .map(String::as_str)
    }

    /// Roles only need looking up when some role is protected.
    pub fn checks_roles(&self) -> bool {
        !self.protected_roles.is_empty()
    }

    #[cfg(test)]
    pub fn for_test(
        min_members: usize,
        protected_members: &[&str],
        protected_roles: &[&str],
    ) -> GroupRules {
        GroupRules {
            min_members,
            max_removals_per_request: 100,
            group_protected: false,
            protected_members: protected_members.iter().map(|m| m.to_lowercase()).collect(),
            protected_roles: protected_roles.iter().map(|r| r.to_lowercase()).collect(),
        }
    }
}

fn lower_all(values: &[String]) -> HashSet<String> {
    values
        .iter()
        .map(|value| value.trim().to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupConstraintSettings;

    const GROUP: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01";
    const OTHER: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a02";
    const ALICE: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01";
    const BOB: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b02";

    fn settings() -> ConstraintSettings {
        let mut settings = ConstraintSettings {
            min_members: 1,
            max_removals_per_request: 100,
            protected_members: vec![ALICE.into()],
            protected_roles: vec!["Master Admin".into()],
            protected_groups: vec![OTHER.into()],
            groups: HashMap::new(),
        };
        settings.groups.insert(
            GROUP.into(),
            GroupConstraintSettings {
                min_members: Some(3),
                max_removals_per_request: Some(10),
                protected_members: vec![BOB.into()],
                protected_roles: vec!["Supervisor".into()],
            },
        );
        settings
    }

    #[test]
    fn group_overrides_replace_numbers_and_add_to_lists() {
        let book = RuleBook::new(&settings());
        let rules = book.for_group(&GroupId::parse(GROUP).unwrap());

        assert_eq!(rules.min_members, 3);
        assert_eq!(rules.max_removals_per_request, 10);
        assert!(rules.protects_member(&MemberId::parse(ALICE).unwrap()));
        assert!(rules.protects_member(&MemberId::parse(BOB).unwrap()));
        let roles = ["supervisor".to_string()];
        assert_eq!(rules.protected_role_among(&roles), Some("supervisor"));
        assert!(!rules.group_protected);
    }

    #[test]
    fn groups_without_overrides_get_the_global_rules() {
        let book = RuleBook::new(&settings());
        let rules = book.for_group(&GroupId::parse(OTHER).unwrap());

        assert_eq!(rules.min_members, 1);
        assert_eq!(rules.max_removals_per_request, 100);
        assert!(rules.group_protected);
        assert!(!rules.protects_member(&MemberId::parse(BOB).unwrap()));
        let roles = ["MASTER ADMIN".to_string()];
        assert_eq!(rules.protected_role_among(&roles), Some("MASTER ADMIN"));
    }
}
