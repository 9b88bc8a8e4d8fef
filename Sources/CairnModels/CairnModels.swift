// CairnModels: local trainers, metrics and safetensors I/O.
// Empty until the trainers issue (#6) fills it; nothing here pretends to work.
