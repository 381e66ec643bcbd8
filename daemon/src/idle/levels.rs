//! The three levels of timeouts: the platform's (config), the devfile's
//! (top-level attributes) and the user's (`PUT /api/v1/idle`). A lower level
//! may only shorten what the level above allows. Pure rules, plus the devfile
//! reading.

use std::time::Duration;

pub use devfile::model::{ATTR_IDLE_TIMEOUT, ATTR_MAX_ACTIVE};

/// A timeout where `None` means "no limit" (inactivity detection off, or no
/// `max_active`).
pub type Limit = Option<Duration>;

/// Whether `asked` is longer than `allowed` (`None` is unlimited).
pub fn longer(asked: Limit, allowed: Limit) -> bool {
    match (asked, allowed) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
    }
}

/// Reads an `idle_timeout`-style value: `0` turns the limit off.
pub fn timeout_limit(d: Duration) -> Limit {
    (!d.is_zero()).then_some(d)
}

/// What a devfile asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevfileAsks {
    /// `Some(None)`: the devfile turns inactivity detection off.
    pub idle_timeout: Option<Limit>,
    pub max_active: Option<Duration>,
}

/// The devfile's two attributes, from its text, read as the injector reads
/// it (strict YAML, `{{var}}` substituted).
pub fn devfile_asks(text: &str) -> Result<DevfileAsks, String> {
    let join = |findings: Vec<devfile::Finding>| {
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let value = devfile::parse(text).map_err(|f| format!("is not a valid devfile: {}", join(f)))?;
    let t = devfile::model::timeouts(&value).map_err(join)?;
    Ok(DevfileAsks {
        idle_timeout: t.idle_timeout.map(timeout_limit),
        max_active: t.max_active,
    })
}

/// Applies the devfile's asks under the platform's limits: the result, or a
/// one-line reason naming the attribute that asks for more.
pub fn apply_devfile(
    platform_timeout: Limit,
    platform_max_active: Limit,
    asks: DevfileAsks,
) -> Result<(Limit, Limit), String> {
    let show = |l: Limit| match l {
        Some(d) => humantime::format_duration(d).to_string(),
        None => "off".to_owned(),
    };
    let mut timeout = platform_timeout;
    let mut max_active = platform_max_active;
    if let Some(asked) = asks.idle_timeout {
        if longer(asked, platform_timeout) {
            return Err(format!(
                "devfile attribute {ATTR_IDLE_TIMEOUT} asks for {} but the platform's idle_timeout allows at most {}; a devfile may only shorten it",
                show(asked),
                show(platform_timeout)
            ));
        }
        timeout = asked;
    }
    if let Some(asked) = asks.max_active {
        if longer(Some(asked), platform_max_active) {
            return Err(format!(
                "devfile attribute {ATTR_MAX_ACTIVE} asks for {} but the platform's max_active allows at most {}; a devfile may only shorten it",
                show(Some(asked)),
                show(platform_max_active)
            ));
        }
        max_active = Some(asked);
    }
    Ok((timeout, max_active))
}

/// The platform and devfile levels combined, read from the config.
pub fn from_config(config: &crate::config::Config) -> Result<(Limit, Limit), String> {
    let platform = (timeout_limit(config.idle_timeout), config.max_active);
    let (Some(path), Some(text)) = (&config.devfile, &config.devfile_text) else {
        return Ok(platform);
    };
    let asks = devfile_asks(text).map_err(|e| format!("devfile {} {e}", path.display()))?;
    apply_devfile(platform.0, platform.1, asks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Duration = Duration::from_secs(60);

    #[test]
    fn reads_the_two_top_level_attributes() {
        let asks = devfile_asks(
            "schemaVersion: 2.2.0\nattributes:\n  workspaced/idle-timeout: 10m\n  workspaced/max-active: 7200\ncomponents: []\n",
        )
        .unwrap();
        assert_eq!(asks.idle_timeout, Some(Some(M * 10)));
        assert_eq!(asks.max_active, Some(M * 120));
        assert_eq!(
            devfile_asks("schemaVersion: 2.2.0\n").unwrap(),
            DevfileAsks::default()
        );
        let e = devfile_asks("attributes:\n  workspaced/idle-timeout: soon\n").unwrap_err();
        assert!(e.contains(ATTR_IDLE_TIMEOUT), "{e}");
        // Attributes of a component are not the devfile's.
        let nested = "components:\n- name: a\n  attributes:\n    workspaced/idle-timeout: 1h\n";
        assert_eq!(devfile_asks(nested).unwrap(), DevfileAsks::default());
    }

    #[test]
    fn a_devfile_may_shorten_but_not_lengthen() {
        let asks = |t: Option<Limit>, m: Option<Duration>| DevfileAsks {
            idle_timeout: t,
            max_active: m,
        };
        assert_eq!(
            apply_devfile(Some(M * 30), None, asks(Some(Some(M * 10)), Some(M * 60))),
            Ok((Some(M * 10), Some(M * 60)))
        );
        let e = apply_devfile(Some(M * 30), None, asks(Some(Some(M * 60)), None)).unwrap_err();
        assert!(e.contains(ATTR_IDLE_TIMEOUT) && e.contains("30m"), "{e}");
        let e = apply_devfile(Some(M * 30), None, asks(Some(None), None)).unwrap_err();
        assert!(
            e.contains("off"),
            "turning detection off is lengthening: {e}"
        );
        let e = apply_devfile(None, Some(M), asks(None, Some(M * 2))).unwrap_err();
        assert!(e.contains(ATTR_MAX_ACTIVE), "{e}");
        // With detection off at the platform, a devfile may turn it on.
        assert_eq!(
            apply_devfile(None, None, asks(Some(Some(M)), None)),
            Ok((Some(M), None))
        );
    }
}
