pub struct ContextRes;
