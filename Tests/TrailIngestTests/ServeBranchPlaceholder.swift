import Testing
// Placeholder so the package builds on the wip-serve branch; the TrailIngest work replaces it.
