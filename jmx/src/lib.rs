//! A JMX client in pure Rust: the JRMP transport of Java RMI and Java Object Serialization, implemented
//! natively, so no JVM is needed to read attributes, invoke operations or receive notifications from a Java
//! process's JMX agent.

mod client;
mod error;
pub mod jrmp;
mod notify;
mod outage;
pub mod serial;
mod sync;
mod tls;
pub mod value;

pub use value::{CompositeData, JavaArg, JavaException, JavaObject, JavaValue, TabularData};

pub use client::{
    CallObserver, ConnectionState, JmxClient, JmxConfig, MBeanAttribute, MBeanInfo, MBeanOperation,
    MBeanParameter, ObservedCall,
};
pub use error::JmxError;
pub use notify::{Notification, NotificationEvent, Subscription};
pub use tls::TlsConfig;
