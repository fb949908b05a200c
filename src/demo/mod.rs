//! `sso-gateway demo`: the whole system on one machine with no Redis or PostgreSQL — the
//! gateway on its embedded default, four simulated login systems (`legacy_idp`: the three
//! provinces', Ba Ria-Vung Tau's speaking CAS, and the national e-ID) and two demo
//! applications, so a person can click through a real login and see SSO.
//!
//! Demo tooling: a module of the gateway binary (not of the library), compiled only with the
//! `demo` feature (on by default; production builds use `--no-default-features`). Owns the
//! demo's port layout, its gateway configuration (`config/demo.toml`) and the demo apps; must
//! not be used by anything in the library.

mod certificate;
mod rp;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::net::TcpListener;

use legacy_idp::LegacyIdpConfig;
use rp::{DemoRp, DemoUser};
use sso_gateway::app::Application;
use sso_gateway::broker::{UpstreamHttp, map_claims};
use sso_gateway::clock::Clock;
use sso_gateway::config::Settings;

/// Port of each simulated system relative to the base port (the RPs sit at +4 and +5).
fn legacy_port(port: u16, id: &str) -> u16 {
    match id {
        "hcm" => port + 1,
        "bd" => port + 2,
        "brvt" => port + 3,
        _ => port + 6,
    }
}

/// The demo gateway configuration with its ports and data directory filled in, and the
/// certificate login on port + 7.
fn gateway_config(port: u16, data_dir: &Path) -> String {
    let certificate = certificate::config(port + 7, data_dir);
    let text = include_str!("../../config/demo.toml")
        .replace("{gateway_port}", &port.to_string())
        .replace("{hcm_port}", &(port + 1).to_string())
        .replace("{bd_port}", &(port + 2).to_string())
        .replace("{brvt_port}", &(port + 3).to_string())
        .replace("{portal_port}", &(port + 4).to_string())
        .replace("{documents_port}", &(port + 5).to_string())
        .replace("{vneid_port}", &(port + 6).to_string())
        .replace("{data_dir}", &data_dir.display().to_string());
    // The certificate upstream goes before the clients, after the other upstreams.
    match text.find("[[clients]]") {
        Some(at) => format!("{}{certificate}\n{}", &text[..at], &text[at..]),
        None => format!("{text}{certificate}"),
    }
}

async fn bind(port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (choose another base port with --port)"))
}

/// `sso-gateway demo`: runs the demo until Ctrl-C, or with `print_config` only prints the
/// gateway configuration it would run (so it can be read or checked with `check-config`).
pub async fn run(port: u16, data_dir: PathBuf, print_config: bool) -> ExitCode {
    if print_config {
        // The configuration names the demo certificate files: they exist once it is printed.
        let made = std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))
            .and_then(|()| certificate::prepare(&data_dir));
        if let Err(e) = made {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
        print!("{}", gateway_config(port, &data_dir));
        return ExitCode::SUCCESS;
    }
    match start(port, data_dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start(port: u16, data_dir: PathBuf) -> Result<(), String> {
    if port > u16::MAX - 7 {
        return Err("--port must leave room for seven more ports".into());
    }
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    certificate::prepare(&data_dir)?;
    let settings = Settings::from_toml(&gateway_config(port, &data_dir)).map_err(|e| e.to_string())?;

    let mut users = Vec::new();
    let mut idps = Vec::new();
    for (id, text) in legacy_idp::SYSTEMS.iter() {
        let config = LegacyIdpConfig::from_toml_str(text).map_err(|e| format!("{id}: {e}"))?;
        let mapping =
            settings.upstreams.iter().find(|u| u.id == *id).map(|u| u.claims.clone()).unwrap_or_default();
        for u in &config.users {
            let profile = map_claims(&mapping, &u.claims);
            users.push(DemoUser {
                system: config.name_vi.clone(),
                username: u.username.clone(),
                password: u.password.clone(),
                name: profile.name.unwrap_or_default(),
                kind: if profile.official_code.is_some() {
                    "Cán bộ / Official".into()
                } else {
                    "Công dân / Citizen".into()
                },
            });
        }
        let listener = bind(legacy_port(port, id)).await?;
        idps.push(legacy_idp::spawn(config, listener).await.map_err(|e| e.to_string())?);
    }

    let gateway_listener = bind(port).await?;
    let app = Application::build_with_listener(settings, Clock::system(), gateway_listener)
        .await
        .map_err(|e| e.to_string())?;
    let gateway = format!("http://127.0.0.1:{port}");
    let http = UpstreamHttp::build_client().map_err(|e| e.to_string())?;
    let portal_url = format!("http://127.0.0.1:{}", port + 4);
    let documents_url = format!("http://127.0.0.1:{}", port + 5);
    let portal = DemoRp {
        title: "Cổng dịch vụ công Thành phố Hồ Chí Minh".into(),
        client_id: "cong-dich-vu-cong".into(),
        client_secret: "demo-portal-secret-0001".into(),
        gateway: gateway.clone(),
        base_url: portal_url.clone(),
        other_app: Some(("Hệ thống quản lý văn bản".into(), format!("{documents_url}/login"))),
        users: users.clone(),
    };
    let documents = DemoRp {
        title: "Hệ thống quản lý văn bản".into(),
        client_id: "quan-ly-van-ban".into(),
        client_secret: "demo-documents-secret-01".into(),
        gateway,
        base_url: documents_url.clone(),
        other_app: Some(("Cổng dịch vụ công".into(), format!("{portal_url}/login"))),
        users,
    };
    for (rp, rp_port) in [(portal, port + 4), (documents, port + 5)] {
        let listener = bind(rp_port).await?;
        let router = rp::router(rp, http.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "demo application stopped");
            }
        });
    }
    println!();
    println!("  sso-gateway demo is running. Open:  {portal_url}/");
    println!();
    print!("{}", certificate::instructions(port + 7, &data_dir, &portal_url));
    println!();
    println!(
        "  (gateway {}, simulated systems {}; Ctrl-C to stop)",
        app.state().issuer(),
        idps.iter().map(|i| i.issuer.as_str()).collect::<Vec<_>>().join(", ")
    );
    app.run_until(sso_gateway::cli::shutdown_signal()).await.map_err(|e| e.to_string())?;
    drop(idps);
    Ok(())
}
