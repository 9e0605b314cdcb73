//! The demo org's fixed data.
//!
//! The ids are fixed so that printed `curl` lines, `docker compose` files,
//! documentation and tests elsewhere can name them. The cast is chosen so that
//! every rule of the service has something to bite on: a user holding the
//! protected role ("Master Admin") in an ordinary group, a break-glass account,
//! a nested group, and a small group where `min_members` matters.

use super::org::{Member, Org};

/// The OAuth client id every sandbox org accepts.
pub const DEMO_CLIENT_ID: &str = "sandbox-client";
/// The OAuth client secret every sandbox org accepts. It protects nothing: the
/// sandbox is for local runs and tests.
pub const DEMO_CLIENT_SECRET: &str = "sandbox-secret";

/// The role the demo treats as protected.
pub const DEMO_PROTECTED_ROLE: &str = "Master Admin";

/// `ada.lovelace`, an Employee.
pub const DEMO_USER_ADA: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01";
/// `grace.hopper`, an Employee.
pub const DEMO_USER_GRACE: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b02";
/// `alan.turing`, an Employee and a Supervisor.
pub const DEMO_USER_ALAN: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b03";
/// `edsger.dijkstra`, a Master Admin: holds the protected role.
pub const DEMO_USER_EDSGER: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b04";
/// `barbara.liskov`, an Employee.
pub const DEMO_USER_BARBARA: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b05";
/// `ken.thompson`, an Employee.
pub const DEMO_USER_KEN: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b06";
/// `break.glass`, a Master Admin: the break-glass account.
pub const DEMO_USER_BREAK_GLASS: &str = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b07";

/// "Support Tier 1": Ada, Grace, Alan, Edsger and Barbara.
pub const DEMO_GROUP_SUPPORT: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01";
/// "Billing": Barbara, Ken and the nested group Escalations.
pub const DEMO_GROUP_BILLING: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a02";
/// "Escalations": Alan and the break-glass account.
pub const DEMO_GROUP_ESCALATIONS: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a03";
/// "Org Admins", meant to be protected: Edsger and the break-glass account.
pub const DEMO_GROUP_ORG_ADMINS: &str = "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a04";

/// Every demo user: id, user name, roles.
const DEMO_USERS: [(&str, &str, &[&str]); 7] = [
    (DEMO_USER_ADA, "ada.lovelace", &["Employee"]),
    (DEMO_USER_GRACE, "grace.hopper", &["Employee"]),
    (DEMO_USER_ALAN, "alan.turing", &["Employee", "Supervisor"]),
    (DEMO_USER_EDSGER, "edsger.dijkstra", &[DEMO_PROTECTED_ROLE]),
    (DEMO_USER_BARBARA, "barbara.liskov", &["Employee"]),
    (DEMO_USER_KEN, "ken.thompson", &["Employee"]),
    (DEMO_USER_BREAK_GLASS, "break.glass", &[DEMO_PROTECTED_ROLE]),
];

/// Puts the demo users and groups into `org`.
pub(crate) fn seed_demo(org: &Org) {
    for (id, user_name, roles) in DEMO_USERS {
        org.add_user(id, user_name, roles);
    }

    let users = |ids: &[&str]| ids.iter().map(|id| Member::user(id)).collect::<Vec<_>>();
    let support = users(&[
        DEMO_USER_ADA,
        DEMO_USER_GRACE,
        DEMO_USER_ALAN,
        DEMO_USER_EDSGER,
        DEMO_USER_BARBARA,
    ]);
    let mut billing = users(&[DEMO_USER_BARBARA, DEMO_USER_KEN]);
    billing.push(Member::group(DEMO_GROUP_ESCALATIONS));
    let escalations = users(&[DEMO_USER_ALAN, DEMO_USER_BREAK_GLASS]);
    let org_admins = users(&[DEMO_USER_EDSGER, DEMO_USER_BREAK_GLASS]);

    org.put_group(DEMO_GROUP_SUPPORT, "Support Tier 1", &support);
    org.put_group(DEMO_GROUP_BILLING, "Billing", &billing);
    org.put_group(DEMO_GROUP_ESCALATIONS, "Escalations", &escalations);
    org.put_group(DEMO_GROUP_ORG_ADMINS, "Org Admins", &org_admins);
}
