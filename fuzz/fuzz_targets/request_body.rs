//! The body of `POST /groups/{groupId}/removals`, from raw bytes: whatever
//! they are, the parser never panics and answers either a valid request or a
//! 400 or 422. A valid request holds 1 to `MAX_MEMBERS` distinct member ids,
//! each a lower-case UUID, and text fields within their limits.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use scim_removals::http::{ApiError, parse_removal_body};
use scim_removals::removal::GroupId;

const GROUP: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01";
const MAX_MEMBERS: usize = 100;

fuzz_target!(|bytes: &[u8]| {
    let group = GroupId::parse(GROUP).expect("the group id is a UUID");

    match parse_removal_body(bytes, group, "fuzz", MAX_MEMBERS) {
        Ok(request) => {
            assert!((1..=MAX_MEMBERS).contains(&request.members.len()));
            let mut seen = HashSet::new();
            for member in &request.members {
                let id = member.as_str();
                assert!(seen.insert(id), "{id} is listed twice");
                assert_eq!(id.len(), 36, "{id:?}");
                assert!(!id.bytes().any(|byte| byte.is_ascii_uppercase()), "{id:?}");
            }
            let chars = |text: &Option<String>| text.as_deref().map_or(0, |t| t.chars().count());
            assert!(chars(&request.reason) <= 1024);
            assert!(chars(&request.requested_by) <= 256);
        }
        Err(ApiError::BadRequest(_) | ApiError::Invalid(_)) => {}
        Err(other) => panic!("a body can only be a 400 or a 422, not {other:?}"),
    }
});
