//! The daily backup the server makes while it runs: at `backup_hour` in the lab's time zone,
//! into `backups_dir()`, keeping the `daily_backups_kept` newest.

use crate::config::Config;
use fabrique_controller::backup::{self, BackupError, Manifest};
use fabrique_controller::lab::now;
use fabrique_controller::{Lab, LabError};
use jiff::{Timestamp, tz::TimeZone};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// The next time at or after `after` whose local hour in `tz` is `hour`, on the hour.
pub fn next_at(after: Timestamp, tz: &TimeZone, hour: u8) -> Timestamp {
    let local = after.to_zoned(tz.clone());
    let today = local.date();
    for day in 0..3 {
        let Ok(date) = today.checked_add(jiff::ToSpan::days(day)) else {
            break;
        };
        if let Ok(at) = date
            .at(i8::try_from(hour).unwrap_or(3), 0, 0, 0)
            .to_zoned(tz.clone())
            && at.timestamp() >= after
        {
            return at.timestamp();
        }
    }
    after
}

/// Makes one backup named for its time, then removes those beyond the number kept.
pub async fn make_daily(lab: &Lab, config: &Config) -> Result<(PathBuf, Manifest), BackupError> {
    let dir = config.backups_dir();
    std::fs::create_dir_all(&dir).map_err(|error| BackupError::Io {
        what: "cannot create",
        path: dir.clone(),
        error,
    })?;
    let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
    let out = dir.join(format!("fabrique-{stamp}"));
    let manifest = backup::make(
        lab.store(),
        &config.database_url(),
        &config.data_dir,
        &out,
        now(),
    )
    .await?;
    backup::prune(&dir, config.daily_backups_kept as usize)?;
    Ok((out, manifest))
}

/// Runs the daily backups until `stop`. A failed backup is logged and tried the next day.
pub async fn daily(lab: Lab, config: Config, stop: CancellationToken) {
    if config.daily_backups_kept == 0 {
        return;
    }
    loop {
        let tz = match lab.calendar_settings().await {
            Ok(settings) => settings.tz(),
            Err(LabError::Store(e)) => {
                tracing::warn!(error = %e, "daily backup: no calendar settings, UTC used");
                TimeZone::UTC
            }
            Err(_) => TimeZone::UTC,
        };
        let at = next_at(Timestamp::now(), &tz, config.backup_hour);
        let wait = at.duration_since(Timestamp::now()).unsigned_abs();
        // select!: stop at shutdown; otherwise sleep until the hour and back up.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait + std::time::Duration::from_secs(1)) => {}
        }
        match make_daily(&lab, &config).await {
            Ok((out, m)) => {
                tracing::info!(backup = %out.display(), files = m.files, "daily backup made")
            }
            Err(e) => tracing::error!(error = %e, "daily backup failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_backup_is_at_the_hour_in_the_labs_time_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let evening: Timestamp = "2026-12-02T20:00:00Z".parse().unwrap();
        assert_eq!(
            next_at(evening, &paris, 3).to_string(),
            "2026-12-03T02:00:00Z",
            "3 h in Paris is 2 h UTC in winter"
        );
        let night: Timestamp = "2026-12-03T01:30:00Z".parse().unwrap();
        assert_eq!(
            next_at(night, &paris, 3).to_string(),
            "2026-12-03T02:00:00Z"
        );
        let summer: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            next_at(summer, &paris, 3).to_string(),
            "2026-07-02T01:00:00Z"
        );
    }
}
