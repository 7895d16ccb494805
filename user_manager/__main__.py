"""Run the User Manager: ``python -m user_manager`` (the roles: common.process.launcher)."""

from common.process.launcher import run
from user_manager.app import SERVICE

if __name__ == "__main__":
    run(SERVICE)
