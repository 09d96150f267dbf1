//! bale storage engine
