"""Start the SQL kernel: `python -m kernels.sql -f CONNECTION_FILE` (`lessonserver_sql` in its image)."""
from ipykernel.kernelapp import IPKernelApp

from .kernel import SQLKernel

IPKernelApp.launch_instance(kernel_class=SQLKernel)
