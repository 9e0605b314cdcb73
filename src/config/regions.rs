//! Genesys Cloud regions and the domains their API and login hosts live under.

/// Region names as Genesys documents them, with the domain of each.
const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "mypurecloud.com"),
    ("eu-west-1", "mypurecloud.ie"),
    ("eu-central-1", "mypurecloud.de"),
    ("ap-southeast-2", "mypurecloud.com.au"),
    ("ap-northeast-1", "mypurecloud.jp"),
    ("us-west-2", "usw2.pure.cloud"),
    ("ca-central-1", "cac1.pure.cloud"),
    ("eu-west-2", "euw2.pure.cloud"),
    ("ap-northeast-2", "apne2.pure.cloud"),
    ("ap-south-1", "aps1.pure.cloud"),
    ("sa-east-1", "sae1.pure.cloud"),
    ("me-central-1", "mec1.pure.cloud"),
    ("ap-northeast-3", "apne3.pure.cloud"),
    ("eu-central-2", "euc2.pure.cloud"),
    ("us-east-2", "use2.us-gov-pure.cloud"),
    ("mx-central-1", "mxc1.pure.cloud"),
    ("ap-southeast-1", "apse1.pure.cloud"),
];

/// The domain for a region name (`us-east-1`) or an environment name
/// (`mypurecloud.ie`), compared without regard to case.
pub fn domain_of(region: &str) -> Option<&'static str> {
    let region = region.trim().to_ascii_lowercase();
    REGIONS
        .iter()
        .find(|(name, domain)| *name == region || *domain == region)
        .map(|(_, domain)| *domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_and_environment_names_map_to_the_same_domain() {
        assert_eq!(domain_of("us-east-1"), Some("mypurecloud.com"));
        assert_eq!(domain_of("EU-WEST-1"), Some("mypurecloud.ie"));
        assert_eq!(domain_of("mypurecloud.ie"), Some("mypurecloud.ie"));
        assert_eq!(domain_of("us-east-2"), Some("use2.us-gov-pure.cloud"));
        assert_eq!(domain_of("apse1.pure.cloud"), Some("apse1.pure.cloud"));
    }

    #[test]
    fn an_unknown_region_has_no_domain() {
        assert_eq!(domain_of("mars-north-1"), None);
    }
}
