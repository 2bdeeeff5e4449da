//! Emails and passwords parsed once at the edge (`Email`, `Password`), and bcrypt hashing
//! with a dummy hash so an unknown email costs as much time as a wrong password.

use std::fmt;

/// A trimmed, lower-cased email with one `@` and a dot in its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let e = raw.trim().to_lowercase();
        let valid = e.len() <= 254
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Email(e))
        } else {
            Err("must be a valid email address".to_string())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that passed the policy. Never printed.
pub struct Password(zeroize::Zeroizing<String>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// The policy of SPEC §4: 12+ characters, at most 72 bytes (bcrypt's limit), one
    /// lower-case, one upper-case, one digit, one symbol, and not the email itself.
    pub fn parse(raw: &str, email: &str) -> Result<Password, String> {
        let chars = raw.chars().count();
        let problems: [(bool, &str); 7] = [
            (chars < 12, "must be at least 12 characters"),
            (raw.len() > 72, "must be at most 72 bytes"),
            (
                !raw.chars().any(char::is_lowercase),
                "must contain a lower-case letter",
            ),
            (
                !raw.chars().any(char::is_uppercase),
                "must contain an upper-case letter",
            ),
            (
                !raw.chars().any(|c| c.is_ascii_digit()),
                "must contain a digit",
            ),
            (
                !raw.chars()
                    .any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
                "must contain a symbol",
            ),
            (
                raw.trim().eq_ignore_ascii_case(email.trim()),
                "must not be the email address",
            ),
        ];
        match problems.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(format!("password {why}")),
            None => Ok(Password(zeroize::Zeroizing::new(raw.to_string()))),
        }
    }

    pub fn hash(&self, cost: u32) -> Result<String, String> {
        bcrypt::hash(self.0.as_str(), cost).map_err(|e| e.to_string())
    }
}

static DUMMY: std::sync::Mutex<Option<(u32, String)>> = std::sync::Mutex::new(None);

fn dummy_hash(cost: u32) -> String {
    let mut d = DUMMY.lock().unwrap_or_else(|p| p.into_inner());
    match &*d {
        Some((c, h)) if *c == cost => h.clone(),
        _ => {
            let h = bcrypt::hash("vel_tutor dummy password", cost).unwrap_or_default();
            *d = Some((cost, h.clone()));
            h
        }
    }
}

/// Computes the dummy hash ahead of the first login (it costs one bcrypt).
pub fn warm_dummy(cost: u32) {
    dummy_hash(cost);
}

/// Checks `candidate` against `hash`; with no hash (unknown email) it checks against a
/// dummy of the same cost so both paths take about the same time.
pub fn verify(candidate: &str, hash: Option<&str>, cost: u32) -> bool {
    match hash {
        Some(h) => bcrypt::verify(candidate, h).unwrap_or(false),
        None => {
            let _ = bcrypt::verify(candidate, &dummy_hash(cost));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        let email = "ada@example.com";
        let cases: [(&str, Result<(), &str>); 9] = [
            ("Abcdefgh1!xy", Ok(())),
            ("Abcdef1!", Err("at least 12 characters")),
            ("abcdefgh1!xyz", Err("upper-case")),
            ("ABCDEFGH1!XYZ", Err("lower-case")),
            ("Abcdefghij!xy", Err("digit")),
            ("Abcdefghij1xy", Err("symbol")),
            ("Ada@Example.com1", Ok(())),
            (&"Aa1!".repeat(19), Err("at most 72 bytes")),
            ("ÄÖÜäöü1!ßàéè", Ok(())),
        ];
        for (pw, want) in cases {
            let got = Password::parse(pw, email).map(|_| ());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(w)) => assert!(e.contains(w), "{pw:?}: {e}"),
                (got, want) => panic!("{pw:?}: got {got:?}, want {want:?}"),
            }
        }
        let e = Password::parse("Ada@Example1.com", "ada@example1.com").unwrap_err();
        assert!(e.contains("not be the email"), "{e}");
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verify_with_and_without_a_hash() {
        let p = Password::parse("Abcdefgh1!xy", "x@y.z").unwrap();
        let h = p.hash(4).unwrap();
        assert!(verify("Abcdefgh1!xy", Some(&h), 4));
        assert!(!verify("Abcdefgh1!xz", Some(&h), 4));
        assert!(!verify("Abcdefgh1!xy", None, 4));
    }
}
