//! `sleep`: waits for a given time, reporting progress. Registered only with `--enable-test-operations`.
//!
//! It touches nothing, so it is how the framework's behaviour (concurrency cap, cancellation, expiry, shutdown)
//! is exercised end to end without a Cassandra node, and how an operator can check a sidecar's API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decode::HumanDuration;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{Validate, Violations};

const LONGEST: Duration = Duration::from_secs(24 * 3600);
const STEPS: u32 = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SleepRequest {
    /// How long to sleep, e.g. `"30s"` or `{"value": 30, "unit": "SECONDS"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// How long it keeps going once cancelled, standing for the clean-up real operations do then (a backup
    /// clearing its snapshot); not cancellable. Lets tests see what clients see while operations wind down.
    #[serde(default, rename = "windDown", skip_serializing_if = "Option::is_none")]
    pub wind_down: Option<HumanDuration>,
}

impl Validate for SleepRequest {
    fn validate(&self, violations: &mut Violations) {
        match self.duration {
            None => violations.add("duration", "is required"),
            Some(HumanDuration(duration)) if duration > LONGEST => {
                violations.add("duration", "must be at most 1 day")
            }
            Some(_) => {}
        }
        if let Some(HumanDuration(wind_down)) = self.wind_down
            && wind_down > LONGEST
        {
            violations.add("windDown", "must be at most 1 day");
        }
    }
}

pub struct Sleep;

impl Operation for Sleep {
    const TYPE: &'static str = "sleep";
    type Request = SleepRequest;

    async fn run(
        &self,
        request: SleepRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let total = request.duration.map(|d| d.0).unwrap_or_default();
        let progress = context.progress();
        let slept = async {
            for step in 1..=STEPS {
                context
                    .cancellable(tokio::time::sleep(total / STEPS))
                    .await?;
                progress.units(step.into(), STEPS.into());
            }
            Ok(())
        }
        .await;
        if slept.is_err()
            && let Some(HumanDuration(wind_down)) = request.wind_down
        {
            tokio::time::sleep(wind_down).await;
        }
        slept
    }
}
