//! The game: scenario schema, role traits and messages, the supervised game loop, payoffs, replay and metrics.
//! It knows no model.
