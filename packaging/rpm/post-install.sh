# Tells systemd about the unit; enabling and starting it is the administrator's choice (`systemctl enable --now
# daedalus`), after /etc/default/daedalus is set.
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
