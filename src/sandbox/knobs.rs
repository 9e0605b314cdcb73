//! The fault knobs: how slow, how rate-limited and how unreliable the
//! simulated org is, and which of Genesys's documented answers it gives.
//!
//! Knobs are read once at the start of each request, so changing them with
//! [`super::Org::set_knobs`] affects the next request, never one in flight.

/// How the org answers a PATCH whose `If-Match` is stale.
///
/// Genesys documents two answers and RFC 7644 a third; a client must treat
/// them alike, so the sandbox can give any of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictStyle {
    /// 400 with `"scimType": "invalidVers"`, as Genesys's parameter docs say.
    #[default]
    InvalidVers400,
    /// 409 "Version does not match current version", as Genesys's response
    /// table says.
    Conflict409,
    /// 412 Precondition Failed, as RFC 7644 servers answer.
    PreconditionFailed412,
}

/// What a successful PATCH answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PatchAnswer {
    /// 200 with the updated group, as Genesys does.
    #[default]
    GroupBody,
    /// 204 without a body, as other RFC 7644 servers may.
    NoContent,
}

/// The org's behaviour under load and failure. [`Knobs::default`] is a
/// perfect org: no latency, no rate limit, no faults.
///
/// Probabilities outside 0..=1 act as their nearest bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Knobs {
    /// Milliseconds added to every answer, token requests included.
    pub latency_ms: u64,
    /// The org's own budget of requests per sliding minute; beyond it every
    /// request is answered 429. `None` disables the budget and the
    /// `inin-ratelimit-*` headers that report it.
    pub rate_limit_per_minute: Option<u32>,
    /// Probability that a request within budget is answered 429 anyway, as
    /// Genesys does when a shared resource is busy.
    pub error_429_rate: f64,
    /// Probability of a 5xx (mostly 503, sometimes 500 or 504). It is rolled
    /// before anything is applied, so a 5xx never changes a group.
    pub error_5xx_rate: f64,
    /// The `Retry-After` seconds sent with every 429.
    pub retry_after_s: u64,
    /// Probability that a request is handled (a PATCH applied) but its answer
    /// is lost: the connection is closed abruptly instead, as when a proxy or
    /// the network drops it. Only requests that reach a handler roll it.
    pub drop_connection_rate: f64,
    /// Probability that another administrator changes a group just before a
    /// PATCH's `If-Match` is checked, so that the PATCH meets a conflict.
    pub version_bump_rate: f64,
    /// How a stale `If-Match` is answered.
    pub conflict_style: ConflictStyle,
    /// How a successful PATCH is answered.
    pub patch_answer: PatchAnswer,
    /// `expires_in` of issued tokens; a token is refused once it has passed.
    pub token_ttl_s: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            rate_limit_per_minute: None,
            error_429_rate: 0.0,
            error_5xx_rate: 0.0,
            retry_after_s: 1,
            drop_connection_rate: 0.0,
            version_bump_rate: 0.0,
            conflict_style: ConflictStyle::default(),
            patch_answer: PatchAnswer::default(),
            // Genesys's default token lifetime: 24 hours.
            token_ttl_s: 86_400,
        }
    }
}

/// Draws once: true with the given probability.
pub(crate) fn roll(probability: f64) -> bool {
    // `random::<f64>()` is in [0, 1), so 0 never fires and 1 always does;
    // comparing instead of `random_bool` also tolerates NaN and out-of-range
    // values without panicking.
    probability > 0.0 && rand::random::<f64>() < probability
}
