//! Users' provider keys as a service: store (format check → live check → seal → store),
//! and `resolve`, the one place that decides which key and base URL a provider call uses.

use crate::app::App;
use crate::config::Secret;
use crate::model::{AuditEvent, Integration};
use crate::providers::{self, CheckError, ProviderName};
use crate::storage::{NewIntegration, StorageError};
use crate::vault;

/// Whose key a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    User,
    Operator,
    /// The local provider needs no key.
    None,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::User => "user",
            KeySource::Operator => "operator",
            KeySource::None => "none",
        }
    }
}

/// The key, endpoint and source a provider call for one user must use.
#[derive(Clone, Debug)]
pub struct ResolvedKey {
    pub key: Secret,
    pub base_url: String,
    pub source: KeySource,
}

#[derive(Debug)]
pub enum PutError {
    /// Bad format or bad base URL (422), naming the field.
    Invalid(&'static str, String),
    /// The provider refused the key (422).
    Rejected(String),
    /// The provider could not be reached (502).
    Unreachable(String),
    Storage(StorageError),
}

impl From<StorageError> for PutError {
    fn from(e: StorageError) -> Self {
        PutError::Storage(e)
    }
}

/// The (possibly user-given) base URL of a provider for this call.
fn base_url_or_default(app: &App, provider: ProviderName, custom: Option<&str>) -> String {
    match custom {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => app.config.providers[provider.as_str()].base_url.clone(),
    }
}

/// Stores (or rotates) a user's key: nothing is written unless the format and the live
/// check both pass. The live check runs with no database connection held.
pub fn put(
    app: &App,
    user_id: &str,
    provider: ProviderName,
    api_key: &str,
    base_url: Option<&str>,
    audit: &AuditEvent,
) -> Result<(Integration, bool), PutError> {
    let key = api_key.trim();
    provider
        .check_key_format(key)
        .map_err(|m| PutError::Invalid("api_key", m))?;
    if base_url.is_some_and(|u| !providers::valid_base_url(u)) {
        return Err(PutError::Invalid(
            "base_url",
            "base_url must be an absolute http:// or https:// URL".into(),
        ));
    }
    let url = base_url_or_default(app, provider, base_url);
    let cfg = &app.config.providers[provider.as_str()];
    providers::check_key(provider, key, &url, cfg).map_err(|e| match e {
        CheckError::Rejected(m) => PutError::Rejected(m),
        CheckError::Unreachable(m) => PutError::Unreachable(m),
    })?;
    let sealed = app
        .vault
        .seal(key, &vault::binding(user_id, provider.as_str()));
    let hint = providers::key_hint(key);
    let validated_at = crate::storage::now_rfc3339();
    let row = NewIntegration {
        user_id,
        provider: provider.as_str(),
        sealed: &sealed.0,
        key_id: &app.vault.current_key_id(),
        key_hint: &hint,
        base_url: base_url.map(|u| u.trim_end_matches('/')),
        validated_at: &validated_at,
    };
    Ok(app.storage.put_integration(&row, audit)?)
}

/// Which key a call to `provider` for `user_id` uses: the user's own integration, else the
/// operator's key from config/env, else `None` ("not configured" for this user).
pub fn resolve(
    app: &App,
    user_id: &str,
    provider: ProviderName,
) -> Result<Option<ResolvedKey>, StorageError> {
    if provider == ProviderName::Local {
        return Ok(Some(ResolvedKey {
            key: Secret::new(""),
            base_url: String::new(),
            source: KeySource::None,
        }));
    }
    if let Some((sealed, base_url)) = app.storage.sealed_integration(user_id, provider.as_str())? {
        match app.vault.open(
            &vault::Sealed(sealed),
            &vault::binding(user_id, provider.as_str()),
        ) {
            Ok(key) => {
                return Ok(Some(ResolvedKey {
                    key,
                    base_url: base_url_or_default(app, provider, base_url.as_deref()),
                    source: KeySource::User,
                }));
            }
            // A key the vault cannot open is treated as absent, loudly: the operator must
            // restore VAULT_KEYS_PREVIOUS or the user must store the key again.
            Err(e) => log::error!("vault: cannot open the {provider} key of user {user_id}: {e}"),
        }
    }
    let cfg = &app.config.providers[provider.as_str()];
    Ok(cfg
        .api_key
        .as_ref()
        .filter(|k| !k.expose().is_empty())
        .map(|k| ResolvedKey {
            key: k.clone(),
            base_url: cfg.base_url.clone(),
            source: KeySource::Operator,
        }))
}
