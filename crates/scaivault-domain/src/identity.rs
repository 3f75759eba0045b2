string_enum! {
    /// The kind of principal an identity is.
    pub enum IdentityType {
        ServiceAccount => "service_account",
        User => "user",
        Group => "group",
    }
    /// A string that is not an identity type.
    pub enum IdentityTypeError => "identity type";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<IdentityType>) {
        assert_eq!(input.parse::<IdentityType>().ok(), expected, "{input:?}");
        assert_eq!(serde_json::from_value::<IdentityType>(input.into()).ok(), expected);
        if let Some(t) = expected {
            assert_eq!(t.as_str(), input);
            assert_eq!(t.to_string(), input);
            assert_eq!(serde_json::to_value(t).unwrap(), input);
        }
    }

    #[test]
    fn spellings() {
        check("service_account", Some(IdentityType::ServiceAccount));
        check("user", Some(IdentityType::User));
        check("group", Some(IdentityType::Group));
        check("ServiceAccount", None);
        check("service-account", None);
        check("users", None);
    }
}
