"""SSH access to a site's machines through its jump hosts: post-install verification, audited commands,
and the ssh_config technicians use to reach machines the way the product does."""
