//! Outbound HTTP from an action.

use ferrovex_sdk::prelude::*;

/// One GET of `url`; anything but 200 fails the call, so the bench counts it as failed.
#[action]
fn fetch_once(ctx: &mut ActionCtx, url: String) -> Result<f64> {
    let response = ctx.fetch(Fetch::get(url.clone()))?;
    if response.status != 200 {
        bail!("fetch_once: {url} answered {}", response.status);
    }
    Ok(f64::from(response.status))
}
