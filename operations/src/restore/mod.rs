mod atomic;
pub mod commitlog;
pub mod download;
pub mod in_place;
