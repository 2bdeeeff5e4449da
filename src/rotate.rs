//! `vault rotate`: re-seals every stored key under the current vault key, one batch per
//! transaction, resumable (rows already under the current key are never read again).

use crate::config::Config;
use crate::storage::{SealedRow, StorageError};
use crate::vault::{self, Vault};

/// What a rotation did.
#[derive(Debug, Default)]
pub struct RotateReport {
    pub resealed: usize,
    /// Rows changed by a concurrent PUT between read and write (already current).
    pub skipped: usize,
    /// Rows no configured key opens (user + provider + why).
    pub failed: Vec<String>,
}

/// Re-seals in batches of `batch` rows with a progress bar on stderr.
pub fn reseal_all(
    config: &Config,
    vault: &Vault,
    batch: u32,
) -> Result<RotateReport, StorageError> {
    let storage = crate::app::open_storage(config)?;
    let current = vault.current_key_id();
    let total = storage.count_integrations_to_reseal(&current)?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} keys re-sealed ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut report = RotateReport::default();
    let mut cursor: Option<(String, String)> = None;
    loop {
        let rows = storage.integrations_to_reseal(
            &current,
            cursor.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            batch,
        )?;
        let Some(last) = rows.last() else { break };
        cursor = Some((last.user_id.clone(), last.provider.clone()));
        let mut sealed: Vec<(SealedRow, Vec<u8>)> = Vec::with_capacity(rows.len());
        for row in rows {
            let binding = vault::binding(&row.user_id, &row.provider);
            match vault.open(&vault::Sealed(row.sealed.clone()), &binding) {
                Ok(key) => {
                    let new = vault.seal(key.expose(), &binding).0;
                    sealed.push((row, new));
                }
                Err(e) => report
                    .failed
                    .push(format!("{}/{}: {e}", row.user_id, row.provider)),
            }
        }
        let n = sealed.len();
        let changed = storage.reseal(&sealed, &current)?;
        report.resealed += changed;
        report.skipped += n - changed;
        bar.inc(n as u64);
    }
    bar.finish();
    Ok(report)
}
