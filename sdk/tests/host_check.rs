//! On the host the export macros type-check the plugin's function and
//! nothing more. This crate is laid out like a plugin whose functions are
//! private and used only by the macros: `dead_code` is denied, so it builds
//! only if each macro's host expansion names its function (a private plugin
//! function must not be reported as unused).

#![deny(dead_code)]

mod filter {
    use sluice_sdk::{NoConfig, Record, Result};

    fn keep(record: &Record, _: &NoConfig) -> Result<bool> {
        Ok(record.value.is_some())
    }

    sluice_sdk::filter!(keep);
}

mod map {
    use sluice_sdk::{Output, Record};

    #[derive(serde::Deserialize)]
    struct Config {
        header: String,
    }

    /// Any `Display` error, not only the SDK's.
    fn tag(record: Record, config: &Config) -> Result<Output, String> {
        Ok(Output::from_record(record).header(config.header.clone(), "yes"))
    }

    sluice_sdk::map!(tag);
}

mod flat_map {
    use sluice_sdk::{NoConfig, Output, Record, Result};

    fn words(record: Record, _: &NoConfig) -> Result<Option<Output>> {
        Ok(record.value.map(Output::value))
    }

    sluice_sdk::flat_map!(words);
}

mod route {
    use sluice_sdk::{NoConfig, Record, Result};

    fn by_partition(record: &Record, _: &NoConfig) -> Result<Option<&'static str>> {
        Ok((record.partition == 0).then_some("zero"))
    }

    sluice_sdk::route!(by_partition);
}

mod export {
    use sluice_sdk::{Batch, NoConfig, Outputs, ProcessError, Processor, Result};

    struct Everything;

    impl Processor for Everything {
        type Config = NoConfig;

        fn init(_: NoConfig) -> Result<Self> {
            Ok(Everything)
        }

        fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
            for (source, _) in batch.indexed() {
                outputs.forward(source);
            }
            Ok(())
        }
    }

    sluice_sdk::export!(Everything);
}

mod stateful {
    use sluice_sdk::clock::{self, Domain};
    use sluice_sdk::{Batch, NoConfig, Output, Outputs, ProcessError, Processor, Result, Timer};

    struct Reminder;

    /// A private helper only `on_timer` uses: it must not be reported as
    /// unused either.
    fn reminder(timer: &Timer) -> Output {
        Output::value(format!("due at {}", timer.at))
    }

    impl Processor for Reminder {
        type Config = NoConfig;

        fn init(_: NoConfig) -> Result<Self> {
            Ok(Reminder)
        }

        fn process(&mut self, batch: Batch, _: &mut Outputs) -> Result<(), ProcessError> {
            for record in batch {
                clock::schedule(Domain::EventTime, b"r", record.timestamp + 1_000);
            }
            Ok(())
        }

        fn on_timer(
            &mut self,
            timers: Vec<Timer>,
            outputs: &mut Outputs,
        ) -> Result<(), ProcessError> {
            for (source, timer) in (0_u32..).zip(&timers) {
                outputs.push(source, reminder(timer));
            }
            Ok(())
        }
    }

    sluice_sdk::export!(Reminder);
}
