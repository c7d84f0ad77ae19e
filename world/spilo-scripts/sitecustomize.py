# The test world's answer to Spilo's /scripts/inplace_upgrade.py (world/src/upgrade/).
#
# There is no /scripts folder on this machine: the pod runner puts the folder of this file on
# PYTHONPATH of `kubectl exec` into Spilo containers only, and Python imports sitecustomize
# before it runs a script. When the script is Spilo's upgrade script, the process becomes the
# world's implementation (the pod runner's binary, linked as `inplace-upgrade` next to this
# file) with the same arguments; any other Python program runs untouched.
import os
import sys

if sys.orig_argv[1:2] == ["/scripts/inplace_upgrade.py"]:
    here = os.path.dirname(os.path.abspath(__file__))
    program = os.path.join(here, "inplace-upgrade")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(program, [program, "spilo-inplace-upgrade"] + sys.orig_argv[2:])
    except OSError as e:
        # exec failed: say why on the last line and end here (sys.exit is not allowed in site).
        print("the test world cannot run the in-place upgrade: %s: %s" % (program, e), flush=True)
        os._exit(1)
