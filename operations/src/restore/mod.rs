mod atomic;
pub mod commitlog;
pub mod in_place;
