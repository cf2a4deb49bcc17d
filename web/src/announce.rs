//! Tells the lab's network that Fabrique is there, by multicast DNS (Bonjour, Avahi), as
//! OctoPrint's discovery plugin does, so that PrusaSlicer's "Browse" and Cura's OctoPrint
//! plugin list the lab without anyone typing an address: the lab and each 3D printer as
//! `_octoprint._tcp` (TXT `path`, `version`, `api`, `vendor`, `model`) and `_http._tcp`
//! (TXT `path`). The printers are read again every half minute, so a printer added or
//! renamed is announced without a restart.
//!
//! On when Fabrique listens on the lab's network (not on 127.0.0.1 alone); off with the
//! setting `announce = false`.

use crate::api::octoprint::{self, API_VERSION, OCTOPRINT_VERSION};
use crate::config::Config;
use fabrique_controller::Lab;
use fabrique_controller::domain::{Machine, MachineKind};
use mdns_sd::{ServiceDaemon, ServiceInfo};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const OCTOPRINT: &str = "_octoprint._tcp.local.";
const HTTP: &str = "_http._tcp.local.";
const EVERY: Duration = Duration::from_secs(30);

/// One announced service: its instance name and the path its API lives under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Service {
    name: String,
    path: String,
    model: String,
}

/// The services a lab announces: the lab itself (any printer), then one per 3D printer.
fn services(lab_name: &str, machines: &[Machine]) -> Vec<Service> {
    let mut all = vec![Service {
        name: instance_name(lab_name),
        path: "/".into(),
        model: lab_name.into(),
    }];
    for m in machines
        .iter()
        .filter(|m| m.kind == MachineKind::FdmPrinter)
    {
        all.push(Service {
            name: instance_name(&format!("{} ({lab_name})", m.name)),
            path: format!("/octoprint/{}/", octoprint::printer_key(m)),
            model: m.name.clone(),
        });
    }
    all
}

/// A DNS-SD instance name is at most 63 bytes; cut at a character boundary.
fn instance_name(name: &str) -> String {
    let mut cut = name.trim().to_string();
    while cut.len() > 63 {
        cut.pop();
    }
    cut
}

/// Starts announcing when the settings ask for it and Fabrique is reachable from the
/// network; stops (saying goodbye, so the entries leave the slicers' lists) when `stop` is
/// cancelled. A network where multicast cannot be used is logged, never fatal.
pub fn start(lab: Lab, config: &Config, port: u16, stop: CancellationToken) {
    if !config.announce {
        return;
    }
    let ip = config.listen.ip();
    if ip.is_loopback() {
        tracing::info!("listening on {ip} only: not announced on the network");
        return;
    }
    let daemon = match ServiceDaemon::new() {
        Ok(daemon) => daemon,
        Err(e) => {
            tracing::warn!(error = %e, "cannot announce the lab on the network (mDNS)");
            return;
        }
    };
    let lab_name = config.lab_name.clone();
    let host = format!("fabrique-{}.local.", host_label(&lab_name));
    let address = if ip.is_unspecified() {
        String::new()
    } else {
        ip.to_string()
    };
    tokio::spawn(async move {
        let mut announced: BTreeMap<String, Service> = BTreeMap::new();
        loop {
            match lab.machines().await {
                Ok(machines) => {
                    let wanted = services(&lab_name, &machines);
                    update(&daemon, &mut announced, &wanted, &host, &address, port);
                }
                Err(e) => tracing::warn!(error = %e, "announce: cannot read the machines"),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
        for fullname in announced.keys() {
            let _ = daemon.unregister(fullname);
        }
        // Lets the goodbyes go out before the daemon stops.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = daemon.shutdown();
    });
}

/// Registers what is new or changed, unregisters what is gone.
fn update(
    daemon: &ServiceDaemon,
    announced: &mut BTreeMap<String, Service>,
    wanted: &[Service],
    host: &str,
    address: &str,
    port: u16,
) {
    let mut keep = BTreeMap::new();
    for service in wanted {
        for ty in [OCTOPRINT, HTTP] {
            let fullname = format!("{}.{ty}", service.name);
            if announced.get(&fullname) == Some(service) {
                keep.insert(fullname.clone(), service.clone());
                announced.remove(&fullname);
                continue;
            }
            let mut txt = vec![("path", service.path.clone())];
            if ty == OCTOPRINT {
                txt.push(("version", OCTOPRINT_VERSION.into()));
                txt.push(("api", API_VERSION.into()));
                txt.push(("vendor", "Fabrique".into()));
                txt.push(("model", service.model.clone()));
            }
            let info = ServiceInfo::new(ty, &service.name, host, address, port, &txt[..])
                .map(ServiceInfo::enable_addr_auto);
            match info.map(|info| daemon.register(info)) {
                Ok(Ok(())) => {
                    keep.insert(fullname, service.clone());
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(service = %service.name, error = %e, "cannot announce");
                }
            }
        }
    }
    for gone in announced.keys() {
        let _ = daemon.unregister(gone);
    }
    *announced = keep;
}

/// A host name label: letters, digits and dashes.
fn host_label(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "lab".into()
    } else {
        label.chars().take(40).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_cut_to_what_dns_sd_takes() {
        let name = instance_name(&"é".repeat(40));
        assert!(name.len() <= 63);
        assert_eq!(name.chars().count(), 31);
    }

    #[test]
    fn a_host_label_is_letters_digits_and_dashes() {
        assert_eq!(
            host_label("Fablab du Centre social"),
            "fablab-du-centre-social"
        );
        assert_eq!(host_label("  "), "lab");
    }
}
