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
