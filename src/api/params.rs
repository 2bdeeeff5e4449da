//! Query-string parameters shared by the list routes: `limit` and RFC 3339 times.
//! Each turns a bad value into a 422 naming the parameter.

use super::Ctx;
use crate::http::ApiError;

/// `limit` from the query string: 1..=max, default 50.
pub fn page_limit(ctx: &Ctx<'_>, max: u32) -> Result<u32, ApiError> {
    match ctx.req.query_param("limit") {
        None => Ok(50.min(max)),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("limit must be a number from 1 to {max}"))
            }),
    }
}

/// An RFC 3339 time from the query string, normalised to the stored format.
pub fn time(ctx: &Ctx<'_>, name: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = ctx.req.query_param(name) else {
        return Ok(None);
    };
    time::OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(crate::storage::rfc3339(t)))
        .map_err(|_| {
            ApiError::invalid(
                name,
                format!("{name} must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"),
            )
        })
}
