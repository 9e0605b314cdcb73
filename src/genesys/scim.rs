//! The SCIM 2.0 shapes Genesys Cloud sends and receives. Only the fields we
//! read are declared: names and e-mail addresses are personal data we have no
//! use for, so they are never even parsed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::removal::{GroupMember, GroupSnapshot, MemberId, MemberKind};

pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Debug, Deserialize)]
pub struct ScimGroup {
    /// `None` when the answer left the attribute out (a trimmed answer, or a
    /// server that omits empty lists); the caller reads the group again.
    pub members: Option<Vec<ScimMember>>,
    pub meta: Option<ScimMeta>,
}

#[derive(Debug, Deserialize)]
pub struct ScimMember {
    pub value: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(rename = "$ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ScimMeta {
    pub version: Option<String>,
}

impl ScimGroup {
    /// The group at `etag` (the header), else at `meta.version`.
    pub fn into_snapshot(self, etag: Option<String>) -> Option<GroupSnapshot> {
        let version = etag.or_else(|| self.meta.and_then(|meta| meta.version))?;
        let members = self
            .members?
            .into_iter()
            .map(ScimMember::into_member)
            .collect();
        Some(GroupSnapshot { version, members })
    }
}

/// Reads a group answer into a snapshot at `etag`, else at `meta.version`.
///
/// A read's answer describes every member (`members_complete`), so one that
/// leaves `members` out has none; a PATCH's answer may leave them out, and is
/// then no snapshot. `Ok(None)` when there is no version, or no members where
/// they are needed. Public for the fuzz target `scim_group` (see `fuzz/`); the
/// client reads every group answer through it.
///
/// # Errors
/// When the body is not a JSON object of the group's shape.
pub fn parse_group(
    body: &[u8],
    etag: Option<String>,
    members_complete: bool,
) -> Result<Option<GroupSnapshot>, serde_json::Error> {
    let mut group: ScimGroup = serde_json::from_slice(body)?;
    if members_complete {
        group.members.get_or_insert_with(Vec::new);
    }
    Ok(group.into_snapshot(etag))
}

impl ScimMember {
    fn into_member(self) -> GroupMember {
        let by_type = self
            .kind
            .as_deref()
            .map(|kind| kind.eq_ignore_ascii_case("group"));
        let by_reference = self.reference.as_deref().map(|r| r.contains("/Groups/"));
        let nested = by_type.or(by_reference).unwrap_or(false);

        GroupMember {
            id: MemberId::from_upstream(&self.value),
            kind: if nested {
                MemberKind::Group
            } else {
                MemberKind::User
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PatchRequest {
    pub schemas: [&'static str; 1],
    #[serde(rename = "Operations")]
    pub operations: Vec<PatchOperation>,
}

#[derive(Debug, Serialize)]
pub struct PatchOperation {
    pub op: &'static str,
    pub path: String,
}

impl PatchRequest {
    /// One `remove` per member, each with a filter, so the PATCH can never
    /// be read as "remove every member".
    pub fn remove(members: &[MemberId]) -> PatchRequest {
        let operations = members
            .iter()
            .map(|member| PatchOperation {
                op: "remove",
                path: format!("members[value eq \"{member}\"]"),
            })
            .collect();
        PatchRequest {
            schemas: [PATCH_OP_SCHEMA],
            operations,
        }
    }
}

/// A user's roles: objects with a `value`, or plain strings.
#[derive(Debug, Deserialize)]
pub struct ScimUserRoles {
    #[serde(default)]
    pub roles: Vec<Value>,
}

impl ScimUserRoles {
    pub fn names(self) -> Vec<String> {
        self.roles
            .into_iter()
            .filter_map(|role| match role {
                Value::String(name) => Some(name),
                Value::Object(fields) => fields.get("value")?.as_str().map(str::to_string),
                _ => None,
            })
            .collect()
    }
}

/// A SCIM error body; `scimType` tells a stale version from other refusals.
#[derive(Debug, Default, Deserialize)]
pub struct ScimError {
    #[serde(rename = "scimType")]
    pub scim_type: Option<String>,
    pub detail: Option<String>,
}

/// An OAuth token answer.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub expires_in: Option<u64>,
}

/// An OAuth error answer.
#[derive(Debug, Default, Deserialize)]
pub struct TokenError {
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_etag_wins_over_meta_version() {
        let group: ScimGroup = serde_json::from_value(json!({
            "members": [], "meta": {"version": "\"7\""}
        }))
        .unwrap();
        assert_eq!(
            group.into_snapshot(Some("W/\"8\"".into())).unwrap().version,
            "W/\"8\""
        );
    }

    #[test]
    fn nested_groups_are_told_apart_by_type_or_reference() {
        let group: ScimGroup = serde_json::from_value(json!({
            "members": [
                {"value": "A1", "type": "User"},
                {"value": "B2", "type": "Group"},
                {"value": "C3", "$ref": "https://api/api/v2/scim/v2/Groups/C3"},
            ],
            "meta": {"version": "\"1\""}
        }))
        .unwrap();
        let kinds: Vec<MemberKind> = group
            .into_snapshot(None)
            .unwrap()
            .members
            .iter()
            .map(|m| m.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![MemberKind::User, MemberKind::Group, MemberKind::Group]
        );
    }

    #[test]
    fn a_group_without_members_in_the_answer_has_no_snapshot() {
        let group: ScimGroup = serde_json::from_value(json!({"id": "x"})).unwrap();
        assert!(group.into_snapshot(Some("\"1\"".into())).is_none());
    }

    #[test]
    fn a_read_without_members_is_an_empty_group_but_a_patch_answer_is_no_snapshot() {
        let body = br#"{"id": "x", "meta": {"version": "\"3\""}}"#;

        let read = parse_group(body, None, true).unwrap().unwrap();
        assert_eq!(read.version, "\"3\"");
        assert!(read.members.is_empty());
        assert_eq!(parse_group(body, None, false).unwrap(), None);
        assert_eq!(
            parse_group(br#"{"members": []}"#, None, true).unwrap(),
            None
        );
        assert!(parse_group(b"[]", Some("\"1\"".into()), true).is_err());
    }

    #[test]
    fn roles_may_be_objects_or_plain_strings() {
        let roles: ScimUserRoles = serde_json::from_value(json!({
            "roles": [{"value": "Master Admin"}, "Employee", 42]
        }))
        .unwrap();
        assert_eq!(roles.names(), vec!["Master Admin", "Employee"]);
    }

    #[test]
    fn a_removal_names_each_member_in_a_filter() {
        let member = MemberId::parse("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01").unwrap();
        let body = serde_json::to_value(PatchRequest::remove(&[member])).unwrap();
        assert_eq!(
            body,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{
                    "op": "remove",
                    "path": "members[value eq \"6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01\"]"
                }]
            })
        );
    }
}
