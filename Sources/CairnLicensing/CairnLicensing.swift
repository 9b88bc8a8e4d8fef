// CairnLicensing: licence documents and encrypted model containers.
// Empty until the model-delivery issue (#8) fills it; nothing here pretends to work.
