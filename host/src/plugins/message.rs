pub struct MessageRes;
