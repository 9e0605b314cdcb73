//! A SCIM group answer from Genesys Cloud (or anything posing as one), as the
//! client reads it into a snapshot: whatever the bytes, parsing never panics;
//! a snapshot's version is the ETag when there is one; and its member ids
//! are trimmed and in lower case, as they are compared everywhere.
//!
//! The first byte chooses the case: bit 0, whether an ETag came with the
//! answer; bit 1, whether it is a read's answer (members always described)
//! or a PATCH's (members may be left out). The rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_removals::genesys::parse_group;

fuzz_target!(|bytes: &[u8]| {
    let Some((&flags, body)) = bytes.split_first() else {
        return;
    };
    let etag = (flags & 1 == 1).then(|| "W/\"7\"".to_string());
    let members_complete = flags & 2 == 2;

    let Ok(Some(snapshot)) = parse_group(body, etag.clone(), members_complete) else {
        return;
    };
    if let Some(etag) = etag {
        assert_eq!(snapshot.version, etag);
    }
    for member in &snapshot.members {
        let id = member.id.as_str();
        assert_eq!(id, id.trim(), "{id:?}");
        assert!(!id.bytes().any(|byte| byte.is_ascii_uppercase()), "{id:?}");
    }
});
