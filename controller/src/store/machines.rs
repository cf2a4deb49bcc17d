//! The machines registry.

use super::{Store, StoreError, StoreResult, conflict, parse_word};
use crate::domain::machine::ConnectionKind;
use crate::domain::{Connection, Machine, MachineId, MachineInput, MachineState, Secret};
use fabrique_machines::files::gcode::ReportedLimits;
use sqlx::Row;
use sqlx::any::AnyRow;

const MACHINE_COLUMNS: &str = "id, name, kind, connection, serial_port, baud, url, api_key, profile, \
     location, required_training, state, state_reason";

fn machine_from_row(row: &AnyRow) -> StoreResult<Machine> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("machine {what}"));
    let port: Option<String> = row.try_get("serial_port")?;
    let baud: Option<i64> = row.try_get("baud")?;
    let url: Option<String> = row.try_get("url")?;
    let api_key: Option<String> = row.try_get("api_key")?;
    let serial = || -> StoreResult<(String, u32)> {
        let port = port.clone().ok_or_else(|| corrupt("serial_port"))?;
        let baud = baud
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| corrupt("baud"))?;
        Ok((port, baud))
    };
    let url = || url.clone().ok_or_else(|| corrupt("url"));
    let connection =
        match parse_word::<ConnectionKind>("connection", &row.try_get::<String, _>("connection")?)?
        {
            ConnectionKind::SerialMarlin => {
                let (port, baud) = serial()?;
                Connection::SerialMarlin { port, baud }
            }
            ConnectionKind::SerialGrbl => {
                let (port, baud) = serial()?;
                Connection::SerialGrbl { port, baud }
            }
            kind @ (ConnectionKind::SerialHpgl | ConnectionKind::SerialHpglRtsCts) => {
                let (port, baud) = serial()?;
                Connection::SerialHpgl {
                    port,
                    baud,
                    hardware_flow: kind == ConnectionKind::SerialHpglRtsCts,
                }
            }
            ConnectionKind::OctoPrint => Connection::OctoPrint {
                url: url()?,
                api_key: Secret::new(api_key.ok_or_else(|| corrupt("api_key"))?),
            },
            ConnectionKind::Moonraker => Connection::Moonraker { url: url()? },
            ConnectionKind::Manual => Connection::Manual,
        };
    let profile: String = row.try_get("profile")?;
    Ok(Machine {
        id: MachineId(row.try_get("id")?),
        name: row.try_get("name")?,
        kind: parse_word("kind", &row.try_get::<String, _>("kind")?)?,
        connection,
        profile: serde_json::from_str(&profile)
            .map_err(|e| StoreError::Corrupt(format!("machine profile: {e}")))?,
        location: row.try_get("location")?,
        required_training: row.try_get("required_training")?,
        state: parse_word("state", &row.try_get::<String, _>("state")?)?,
        state_reason: row.try_get("state_reason")?,
    })
}

/// The connection as the columns store it: (kind, port, baud, url, api key).
type ConnectionColumns<'a> = (
    &'static str,
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
);

fn connection_columns(connection: &Connection) -> ConnectionColumns<'_> {
    let kind = connection.kind().as_str();
    match connection {
        Connection::SerialMarlin { port, baud }
        | Connection::SerialGrbl { port, baud }
        | Connection::SerialHpgl { port, baud, .. } => {
            (kind, Some(port), Some(i64::from(*baud)), None, None)
        }
        Connection::OctoPrint { url, api_key } => {
            (kind, None, None, Some(url), Some(api_key.expose()))
        }
        Connection::Moonraker { url } => (kind, None, None, Some(url), None),
        Connection::Manual => (kind, None, None, None, None),
    }
}

fn profile_json(input: &MachineInput) -> StoreResult<String> {
    serde_json::to_string(&input.profile)
        .map_err(|e| StoreError::Corrupt(format!("machine profile: {e}")))
}

impl Store {
    pub async fn insert_machine(
        &self,
        input: &MachineInput,
        state: MachineState,
        now: i64,
    ) -> StoreResult<MachineId> {
        let (connection, port, baud, url, api_key) = connection_columns(&input.connection);
        let row = sqlx::query(
            "INSERT INTO machines (name, kind, connection, serial_port, baud, url, api_key, profile, \
             location, required_training, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
        )
        .bind(&input.name)
        .bind(input.kind.as_str())
        .bind(connection)
        .bind(port)
        .bind(baud)
        .bind(url)
        .bind(api_key)
        .bind(profile_json(input)?)
        .bind(&input.location)
        .bind(&input.required_training)
        .bind(state.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(conflict("machine_name"))?;
        Ok(MachineId(row.try_get("id")?))
    }

    pub async fn update_machine(
        &self,
        id: MachineId,
        input: &MachineInput,
        now: i64,
    ) -> StoreResult<()> {
        let (connection, port, baud, url, api_key) = connection_columns(&input.connection);
        let done = sqlx::query(
            "UPDATE machines SET name = $1, kind = $2, connection = $3, serial_port = $4, baud = $5, \
             url = $6, api_key = $7, profile = $8, location = $9, required_training = $10, updated_at = $11 \
             WHERE id = $12",
        )
        .bind(&input.name)
        .bind(input.kind.as_str())
        .bind(connection)
        .bind(port)
        .bind(baud)
        .bind(url)
        .bind(api_key)
        .bind(profile_json(input)?)
        .bind(&input.location)
        .bind(&input.required_training)
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(conflict("machine_name"))?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    pub async fn set_machine_state(
        &self,
        id: MachineId,
        state: MachineState,
        reason: &str,
        now: i64,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE machines SET state = $1, state_reason = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    pub async fn machine(&self, id: MachineId) -> StoreResult<Machine> {
        let row = sqlx::query(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        machine_from_row(&row)
    }

    pub async fn list_machines(&self) -> StoreResult<Vec<Machine>> {
        let rows = sqlx::query(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(machine_from_row).collect()
    }
}

/// What a machine's firmware reported of its motion limits, kept apart from its profile
/// until a manager adopts them.
impl Store {
    /// The latest report, and when it came.
    pub async fn reported_limits(
        &self,
        id: MachineId,
    ) -> StoreResult<Option<(ReportedLimits, i64)>> {
        let row = sqlx::query(
            "SELECT limits, reported_at FROM machine_reported_limits WHERE machine_id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let limits: String = row.try_get("limits")?;
        let limits = serde_json::from_str(&limits)
            .map_err(|e| StoreError::Corrupt(format!("reported limits: {e}")))?;
        Ok(Some((limits, row.try_get("reported_at")?)))
    }

    pub async fn set_reported_limits(
        &self,
        id: MachineId,
        limits: &ReportedLimits,
        now: i64,
    ) -> StoreResult<()> {
        let text = serde_json::to_string(limits)
            .map_err(|e| StoreError::Corrupt(format!("reported limits: {e}")))?;
        sqlx::query(
            "INSERT INTO machine_reported_limits (machine_id, limits, reported_at) VALUES ($1, $2, $3) \
             ON CONFLICT (machine_id) DO UPDATE SET limits = excluded.limits, reported_at = excluded.reported_at",
        )
        .bind(id.0)
        .bind(text)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// One line of a machine's operator panel log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PanelLogEntry {
    pub at: i64,
    pub who: String,
    /// [`crate::domain::panel::PanelAction::name`].
    pub action: String,
    /// The line or byte sent, as text.
    pub sent: String,
    /// What the machine answered (its lines, `ok`, `error:N` in words), or why nothing
    /// was sent.
    pub answer: String,
}

/// What people did at a machine's operator panel.
impl Store {
    pub async fn log_panel(
        &self,
        machine: MachineId,
        by: &crate::domain::User,
        entry: &PanelLogEntry,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO machine_panel_log (machine_id, user_id, user_name, action, sent, answer, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(machine.0)
        .bind(by.id.0)
        .bind(&by.display_name)
        .bind(&entry.action)
        .bind(&entry.sent)
        .bind(&entry.answer)
        .bind(entry.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` entries, newest first.
    pub async fn panel_log(
        &self,
        machine: MachineId,
        limit: i64,
    ) -> StoreResult<Vec<PanelLogEntry>> {
        let rows = sqlx::query(
            "SELECT at, user_name, action, sent, answer FROM machine_panel_log \
             WHERE machine_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(machine.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PanelLogEntry {
                    at: r.try_get("at")?,
                    who: r.try_get("user_name")?,
                    action: r.try_get("action")?,
                    sent: r.try_get("sent")?,
                    answer: r.try_get("answer")?,
                })
            })
            .collect()
    }
}
