// CairnSIMD: the averaging core (quantisation, modular sums, weighted averages, mask expansion).
// Empty until the SIMD-core issue (#3) fills it; nothing here pretends to work.
