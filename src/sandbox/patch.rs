//! Reading a SCIM PatchOp body (RFC 7644 §3.5.2) into member changes.
//!
//! The sandbox understands what a membership tool sends to a group and
//! nothing more:
//!
//! - `remove` with `members[value eq "<id>"]`, the RFC form;
//! - `remove` with path `members` and a `value` list of `{"value": "<id>"}`, the
//!   form some identity providers send and the service's configurable fallback;
//! - `add` with path `members` (or no path and a `{"members": [...]}` value).
//!
//! A `remove` of plain `members` without a value would empty the group; real
//! servers do exactly that, the sandbox refuses it with `invalidPath` so that a
//! client bug shows up as an error instead of an empty group. `replace` and
//! paths other than `members` are refused as well: nothing in the service
//! needs them.
//!
//! Parsing looks at the body alone. Whether a named member is in the group is
//! the org's business ([`super::org`]), decided under its lock.

use serde::Deserialize;
use serde_json::Value;

use super::org::MemberKind;

/// The schema URN every PatchOp body must declare.
pub(crate) const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// One change to a group's member list, with the member id in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemberChange {
    /// Take this member out; the group must hold it (else `noTarget`).
    Remove { value: String },
    /// Put this member in; already present is not an error. Without a `type`
    /// in the request, the org decides from whether the id names a group.
    Add {
        value: String,
        kind: Option<MemberKind>,
    },
}

/// Why a PATCH is answered 400, as a SCIM `scimType` and a readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PatchRejection {
    pub(crate) scim_type: &'static str,
    pub(crate) detail: String,
}

impl PatchRejection {
    pub(crate) fn new(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            scim_type,
            detail: detail.into(),
        }
    }
}

#[derive(Deserialize)]
struct PatchRequest {
    #[serde(default)]
    schemas: Vec<String>,
    // RFC 7644 spells it `Operations`; lenient servers take the lower case too.
    #[serde(rename = "Operations", alias = "operations", default)]
    operations: Vec<RawOperation>,
}

#[derive(Deserialize)]
struct RawOperation {
    op: String,
    path: Option<String>,
    value: Option<Value>,
}

/// A member named in an operation's `value`.
#[derive(Deserialize)]
struct NamedMember {
    value: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// What a `path` designates, once parsed.
enum MemberPath {
    /// Plain `members`: the whole list.
    All,
    /// `members[value eq "<id>"]`: one member, id in lower case.
    One(String),
}

/// Reads a PatchOp body into the changes it asks for, in order.
///
/// # Errors
///
/// A [`PatchRejection`] (`invalidSyntax`, `invalidPath`, `invalidFilter` or
/// `invalidValue`) when the body is not a PatchOp the sandbox understands.
pub(crate) fn parse_patch(body: &[u8]) -> Result<Vec<MemberChange>, PatchRejection> {
    let request: PatchRequest = serde_json::from_slice(body).map_err(|error| {
        PatchRejection::new(
            "invalidSyntax",
            format!("the body is not a PatchOp: {error}"),
        )
    })?;

    if !request
        .schemas
        .iter()
        .any(|schema| schema == PATCH_OP_SCHEMA)
    {
        return Err(PatchRejection::new(
            "invalidSyntax",
            format!("schemas must contain {PATCH_OP_SCHEMA}"),
        ));
    }
    if request.operations.is_empty() {
        return Err(PatchRejection::new("invalidSyntax", "Operations is empty"));
    }

    let mut changes = Vec::new();
    for operation in &request.operations {
        changes.extend(parse_operation(operation)?);
    }
    Ok(changes)
}

fn parse_operation(operation: &RawOperation) -> Result<Vec<MemberChange>, PatchRejection> {
    // Op names are case-insensitive: Azure AD, for one, sends "Remove".
    match operation.op.to_ascii_lowercase().as_str() {
        "remove" => parse_remove(operation),
        "add" => parse_add(operation),
        "replace" => Err(PatchRejection::new(
            "invalidSyntax",
            "the sandbox applies only add and remove operations",
        )),
        other => Err(PatchRejection::new(
            "invalidSyntax",
            format!("unknown op {other:?}"),
        )),
    }
}

fn parse_remove(operation: &RawOperation) -> Result<Vec<MemberChange>, PatchRejection> {
    let Some(path) = operation.path.as_deref() else {
        return Err(PatchRejection::new(
            "noTarget",
            "a remove operation needs a path",
        ));
    };

    match parse_member_path(path)? {
        MemberPath::One(value) => Ok(vec![MemberChange::Remove { value }]),
        MemberPath::All => {
            // Only the value-list form names members; without it this would
            // remove every member, which the sandbox never does.
            let named = match &operation.value {
                Some(value) => named_members(value)?,
                None => Vec::new(),
            };
            if named.is_empty() {
                return Err(PatchRejection::new(
                    "invalidPath",
                    "removing \"members\" without a filter would empty the group; refused",
                ));
            }
            let removals = named
                .into_iter()
                .map(|member| MemberChange::Remove {
                    value: member.value.to_ascii_lowercase(),
                })
                .collect();
            Ok(removals)
        }
    }
}

fn parse_add(operation: &RawOperation) -> Result<Vec<MemberChange>, PatchRejection> {
    let Some(value) = &operation.value else {
        return Err(PatchRejection::new(
            "invalidValue",
            "an add operation needs a value",
        ));
    };

    // Without a path, the value is a partial resource: {"members": [...]}.
    let listed = match operation.path.as_deref() {
        None => value.get("members").ok_or_else(|| {
            PatchRejection::new("invalidPath", "the sandbox adds only to \"members\"")
        })?,
        Some(path) => match parse_member_path(path)? {
            MemberPath::All => value,
            MemberPath::One(_) => {
                return Err(PatchRejection::new(
                    "invalidPath",
                    "add takes the path \"members\", without a filter",
                ));
            }
        },
    };

    let named = named_members(listed)?;
    if named.is_empty() {
        return Err(PatchRejection::new("invalidValue", "add names no member"));
    }
    named.into_iter().map(to_addition).collect()
}

fn to_addition(member: NamedMember) -> Result<MemberChange, PatchRejection> {
    let kind = match member
        .kind
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("user") => Some(MemberKind::User),
        Some("group") => Some(MemberKind::Group),
        Some(other) => {
            return Err(PatchRejection::new(
                "invalidValue",
                format!("member type {other:?} is neither User nor Group"),
            ));
        }
    };
    Ok(MemberChange::Add {
        value: member.value.to_ascii_lowercase(),
        kind,
    })
}

/// Reads `[{"value": "<id>"}, ...]`; a single object is taken as a list of one.
fn named_members(value: &Value) -> Result<Vec<NamedMember>, PatchRejection> {
    let listed = match value {
        Value::Array(items) => items.clone(),
        Value::Object(_) => vec![value.clone()],
        _ => {
            return Err(PatchRejection::new(
                "invalidValue",
                "value must be a list of {\"value\": \"<id>\"}",
            ));
        }
    };

    listed.into_iter().map(read_named_member).collect()
}

fn read_named_member(item: Value) -> Result<NamedMember, PatchRejection> {
    let member: NamedMember = serde_json::from_value(item).map_err(|error| {
        PatchRejection::new("invalidValue", format!("a member is malformed: {error}"))
    })?;

    if member.value.trim().is_empty() {
        return Err(PatchRejection::new(
            "invalidValue",
            "a member's value is empty",
        ));
    }
    Ok(member)
}

/// Parses `members` or `members[value eq "<id>"]`; the attribute name, `value`
/// and `eq` are case-insensitive, as RFC 7644 wants.
fn parse_member_path(path: &str) -> Result<MemberPath, PatchRejection> {
    let path = path.trim();
    let (attribute, filter) = match path.split_once('[') {
        None => (path, None),
        Some((attribute, rest)) => (attribute, Some(rest)),
    };

    if !attribute.trim().eq_ignore_ascii_case("members") {
        return Err(PatchRejection::new(
            "invalidPath",
            format!("the sandbox changes only \"members\", not {attribute:?}"),
        ));
    }
    let Some(filter) = filter else {
        return Ok(MemberPath::All);
    };

    // Anything after the closing bracket (a sub-attribute) is not a member.
    let Some(filter) = filter.strip_suffix(']') else {
        return Err(PatchRejection::new(
            "invalidPath",
            format!("{path:?} does not end with the filter's ']'"),
        ));
    };
    parse_value_filter(filter).map(MemberPath::One)
}

/// Parses `value eq "<id>"` into the id, in lower case.
fn parse_value_filter(filter: &str) -> Result<String, PatchRejection> {
    let invalid = || {
        PatchRejection::new(
            "invalidFilter",
            format!("expected value eq \"<id>\", got {filter:?}"),
        )
    };

    let (attribute, rest) = filter
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(invalid)?;
    let (operator, literal) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(invalid)?;
    if !attribute.eq_ignore_ascii_case("value") || !operator.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }

    let id = literal
        .trim()
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .filter(|id| !id.is_empty() && !id.contains('"'))
        .ok_or_else(invalid)?;
    Ok(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<Vec<MemberChange>, PatchRejection> {
        parse_patch(body.to_string().as_bytes())
    }

    fn patch_op(operations: Value) -> Value {
        json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": operations })
    }

    fn remove(value: &str) -> MemberChange {
        MemberChange::Remove {
            value: value.to_owned(),
        }
    }

    #[test]
    fn filtered_removes_are_read_in_order_and_lower_cased() {
        let body = patch_op(json!([
            { "op": "remove", "path": "members[value eq \"AB-1\"]" },
            { "op": "Remove", "path": "  Members[ Value  EQ  \"cd-2\" ] " },
        ]));

        assert_eq!(parse(body), Ok(vec![remove("ab-1"), remove("cd-2")]));
    }

    #[test]
    fn value_list_removes_name_each_member() {
        let body = patch_op(json!([
            { "op": "remove", "path": "members", "value": [{ "value": "A" }, { "value": "b" }] },
        ]));

        assert_eq!(parse(body), Ok(vec![remove("a"), remove("b")]));
    }

    #[test]
    fn a_remove_that_would_empty_the_group_is_refused_as_invalid_path() {
        for operation in [
            json!({ "op": "remove", "path": "members" }),
            json!({ "op": "remove", "path": "members", "value": [] }),
        ] {
            let rejection = parse(patch_op(json!([operation.clone()])));

            assert_eq!(
                rejection.map_err(|rejection| rejection.scim_type),
                Err("invalidPath"),
                "{operation}"
            );
        }
    }

    #[test]
    fn adds_take_the_member_type_when_given() {
        let body = patch_op(json!([
            { "op": "ADD", "path": "members", "value": [{ "value": "G", "type": "Group" }] },
            { "op": "add", "value": { "members": [{ "value": "u" }] } },
        ]));

        let expected = vec![
            MemberChange::Add {
                value: "g".into(),
                kind: Some(MemberKind::Group),
            },
            MemberChange::Add {
                value: "u".into(),
                kind: None,
            },
        ];
        assert_eq!(parse(body), Ok(expected));
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_matching_scim_type() {
        let cases = [
            (json!({ "Operations": [] }), "invalidSyntax"),
            (patch_op(json!([])), "invalidSyntax"),
            (
                patch_op(json!([{ "op": "replace", "path": "members" }])),
                "invalidSyntax",
            ),
            (
                patch_op(json!([{ "op": "remove", "path": "displayName" }])),
                "invalidPath",
            ),
            (
                patch_op(json!([{ "op": "remove", "path": "members[value ne \"a\"]" }])),
                "invalidFilter",
            ),
            (
                patch_op(json!([{ "op": "remove", "path": "members[value eq a]" }])),
                "invalidFilter",
            ),
            (
                patch_op(json!([{ "op": "remove", "path": "members[value eq \"a\"].type" }])),
                "invalidPath",
            ),
            (
                patch_op(json!([{ "op": "add", "path": "members", "value": 3 }])),
                "invalidValue",
            ),
        ];

        for (body, scim_type) in cases {
            let outcome = parse(body.clone()).map_err(|rejection| rejection.scim_type);

            assert_eq!(outcome, Err(scim_type), "body {body}");
        }
        assert!(parse_patch(b"{not json").is_err());
    }
}
