//! `daedalus jmx ...`: a JVM-free jmxterm, for operators and for checking a node's JMX by hand.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use jmx::{JavaArg, JavaValue, JmxClient, NotificationEvent};

use crate::args::JmxArgs;
use crate::jmx_credentials::jmx_settings;

#[derive(Debug, Args)]
pub struct JmxCommandArgs {
    #[command(subcommand)]
    pub command: JmxCommand,

    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub jmx: JmxArgs,
}

#[derive(Debug, Subcommand)]
pub enum JmxCommand {
    /// Read one attribute, or several at once.
    Get {
        mbean: String,
        #[arg(required = true)]
        attributes: Vec<String>,
    },
    /// Write an attribute; VALUE is typed as for `invoke` (e.g. `int:4`).
    Set {
        mbean: String,
        attribute: String,
        value: String,
    },
    /// Invoke an operation. Arguments are `TYPE:VALUE` (`int:2`, `long:5`, `boolean:true`, `double:0.5`,
    /// `string:ks`, `string[]:a,b`, `map:k=v,k2=v2`, `set:a,b`, `list:a,b`, `objectname:d:type=X`);
    /// a value without a type is a string. The signature follows from the types.
    Invoke {
        mbean: String,
        operation: String,
        arguments: Vec<String>,
    },
    /// List MBean names matching a pattern (all when omitted).
    Query { pattern: Option<String> },
    /// Describe an MBean's attributes and operations.
    Info { mbean: String },
    /// Print an MBean's notifications as they arrive, one JSON object per line.
    Listen {
        mbean: String,
        /// Stop after this many notifications.
        #[arg(long)]
        count: Option<usize>,
    },
}

pub fn run(args: JmxCommandArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(execute(args))
}

async fn execute(args: JmxCommandArgs) -> anyhow::Result<()> {
    let settings = jmx_settings(&args.jmx)?;
    let client = JmxClient::connect(settings.client_config()).await?;
    let json = args.json;
    match args.command {
        JmxCommand::Get { mbean, attributes } if attributes.len() == 1 => {
            print(&client.get_attribute(&mbean, &attributes[0]).await?, json)
        }
        JmxCommand::Get { mbean, attributes } => {
            let names: Vec<&str> = attributes.iter().map(String::as_str).collect();
            let values = client.get_attributes(&mbean, &names).await?;
            let map = JavaValue::Map(
                values
                    .into_iter()
                    .map(|(k, v)| (JavaValue::String(k), v))
                    .collect(),
            );
            print(&map, json)
        }
        JmxCommand::Set {
            mbean,
            attribute,
            value,
        } => {
            let (value, _) = parse_argument(&value)?;
            client.set_attribute(&mbean, &attribute, value).await?;
        }
        JmxCommand::Invoke {
            mbean,
            operation,
            arguments,
        } => {
            let parsed = arguments
                .iter()
                .map(|a| parse_argument(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (params, signature): (Vec<JavaArg>, Vec<&str>) = parsed.into_iter().unzip();
            print(
                &client
                    .invoke(&mbean, &operation, &params, &signature)
                    .await?,
                json,
            )
        }
        JmxCommand::Query { pattern } => {
            let names = client.query_names(pattern.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&names)?);
            } else {
                names.iter().for_each(|name| println!("{name}"));
            }
        }
        JmxCommand::Info { mbean } => info(&client, &mbean, json).await?,
        JmxCommand::Listen { mbean, count } => listen(&client, &mbean, count).await?,
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
    Ok(())
}

/// Scalars print as themselves; anything else (or everything, with `--json`) as JSON.
fn print(value: &JavaValue, json: bool) {
    let scalar = match value {
        JavaValue::String(s) | JavaValue::ObjectName(s) => Some(s.clone()),
        JavaValue::Null => Some("null".into()),
        JavaValue::Boolean(b) => Some(b.to_string()),
        other => other
            .as_i64()
            .map(|n| n.to_string())
            .or_else(|| other.as_f64().map(|f| f.to_string())),
    };
    match scalar {
        Some(text) if !json => println!("{text}"),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<{e}>"))
        ),
    }
}

async fn info(client: &JmxClient, mbean: &str, json: bool) -> anyhow::Result<()> {
    let info = client.mbean_info(mbean).await?;
    if json {
        let value = serde_json::json!({
            "className": info.class_name,
            "description": info.description,
            "attributes": info.attributes.iter().map(|a| serde_json::json!({
                "name": a.name, "type": a.type_name, "readable": a.readable, "writable": a.writable,
            })).collect::<Vec<_>>(),
            "operations": info.operations.iter().map(|o| serde_json::json!({
                "name": o.name, "returnType": o.return_type,
                "parameters": o.parameters.iter().map(|p| serde_json::json!({"name": p.name, "type": p.type_name})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{mbean} ({})", info.class_name);
    println!("attributes:");
    for a in &info.attributes {
        let access = match (a.readable, a.writable) {
            (true, true) => "rw",
            (true, false) => "r",
            (false, true) => "w",
            (false, false) => "-",
        };
        println!("  {access:2} {} : {}", a.name, a.type_name);
    }
    println!("operations:");
    for o in &info.operations {
        let parameters: Vec<_> = o
            .parameters
            .iter()
            .map(|p| format!("{} {}", p.type_name, p.name))
            .collect();
        println!("  {} {}({})", o.return_type, o.name, parameters.join(", "));
    }
    Ok(())
}

async fn listen(client: &JmxClient, mbean: &str, count: Option<usize>) -> anyhow::Result<()> {
    let mut subscription = client.subscribe(mbean).await?;
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let event = tokio::select! {
            event = subscription.next() => event,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Some(NotificationEvent::Notification(n)) => {
                let line = serde_json::json!({
                    "type": n.kind, "source": n.source, "sequenceNumber": n.sequence_number,
                    "timeStamp": n.timestamp, "message": n.message, "userData": n.user_data,
                });
                println!("{line}");
                seen += 1;
            }
            Some(NotificationEvent::Lost(lost)) => {
                eprintln!("daedalus: {lost} notifications were lost")
            }
            Some(NotificationEvent::Failed(error)) => return Err(error.into()),
            None => break,
        }
    }
    subscription.close().await?;
    Ok(())
}

/// `TYPE:VALUE` → the argument and its signature type.
fn parse_argument(text: &str) -> anyhow::Result<(JavaArg, &'static str)> {
    let Some((kind, value)) = text.split_once(':') else {
        return Ok((JavaArg::String(text.to_string()), "java.lang.String"));
    };
    let list = || -> Vec<String> {
        if value.is_empty() {
            Vec::new()
        } else {
            value.split(',').map(str::to_string).collect()
        }
    };
    Ok(match kind {
        "int" => (
            JavaArg::Int(
                value
                    .parse()
                    .with_context(|| format!("'{value}' is not an int"))?,
            ),
            "int",
        ),
        "long" => (
            JavaArg::Long(
                value
                    .parse()
                    .with_context(|| format!("'{value}' is not a long"))?,
            ),
            "long",
        ),
        "boolean" => (
            JavaArg::Boolean(
                value
                    .parse()
                    .with_context(|| format!("'{value}' is not a boolean"))?,
            ),
            "boolean",
        ),
        "double" => (
            JavaArg::Double(
                value
                    .parse()
                    .with_context(|| format!("'{value}' is not a double"))?,
            ),
            "double",
        ),
        "string" | "str" => (JavaArg::String(value.to_string()), "java.lang.String"),
        "string[]" => (JavaArg::StringArray(list()), "[Ljava.lang.String;"),
        "set" => (JavaArg::StringSet(list()), "java.util.Set"),
        "list" => (JavaArg::StringList(list()), "java.util.List"),
        "objectname" => (
            JavaArg::ObjectName(value.to_string()),
            "javax.management.ObjectName",
        ),
        "map" => {
            let entries = list()
                .into_iter()
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => Ok((k.to_string(), v.to_string())),
                    None => bail!("map entry '{pair}' is not KEY=VALUE"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (JavaArg::StringMap(entries), "java.util.Map")
        }
        // Not a known type: the whole text is a string (e.g. an ObjectName-like "a:b").
        _ => (JavaArg::String(text.to_string()), "java.lang.String"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_carry_their_java_types() {
        assert_eq!(parse_argument("int:4").unwrap(), (JavaArg::Int(4), "int"));
        assert_eq!(
            parse_argument("ks").unwrap(),
            (JavaArg::String("ks".into()), "java.lang.String")
        );
        assert_eq!(
            parse_argument("string[]:a,b").unwrap(),
            (
                JavaArg::StringArray(vec!["a".into(), "b".into()]),
                "[Ljava.lang.String;"
            )
        );
        assert_eq!(
            parse_argument("string[]:").unwrap().0,
            JavaArg::StringArray(vec![])
        );
        assert_eq!(
            parse_argument("map:k=v,x=y").unwrap().0,
            JavaArg::StringMap(vec![("k".into(), "v".into()), ("x".into(), "y".into())])
        );
        assert!(parse_argument("int:four").is_err());
        assert!(parse_argument("map:novalue").is_err());
        assert_eq!(
            parse_argument("other:thing").unwrap().0,
            JavaArg::String("other:thing".into())
        );
    }
}
