//! `sluice console`: the web console's address, with the admin token in
//! its fragment (`http://127.0.0.1:9644/#token=…`). The page takes the
//! token from there into the tab's session storage and drops it from the
//! address bar; a fragment is never sent to the server, so the token does
//! not reach access logs or proxies. Open the printed link in a browser on
//! a machine you trust: whoever has it can use the admin API.

use anyhow::Result;
use clap::Args;

use super::admin::{encode, Admin, AdminArgs};

/// `sluice console` options.
#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Prints the console's link.
pub(crate) async fn run(args: ConsoleArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let Some(token) = admin.token().await else {
        anyhow::bail!(
            "no admin token: pass --token or set SLUICE_TOKEN (the broker keeps it in \
             <data-dir>/{}); the console at {}/ also asks for it",
            crate::http::TOKEN_FILE,
            admin.base()
        );
    };
    println!("{}/#token={}", admin.base(), encode(token));
    Ok(())
}
