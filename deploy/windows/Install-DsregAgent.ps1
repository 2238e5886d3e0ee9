<#
.SYNOPSIS
    Installs dsreg-agent on a Windows device: binary, config, the SYSTEM agent (a Windows
    service by default, or a scheduled task) and the per-user logon task.

.DESCRIPTION
    - Copies dsreg-agent.exe to "$env:ProgramFiles\dsreg-agent" and the config to
      "$env:ProgramData\dsreg-agent\agent.toml" (kept if it already exists, so re-running the
      installer for an upgrade never loses local settings).
    - -Mode Service (the default): registers the Windows service "dsreg-agent" (LocalSystem,
      start type Automatic (Delayed Start), restarted by the service control manager after a
      crash or a non-zero exit) running
        "dsreg-agent.exe" run --service --config "...\agent.toml" --log-file "...\agent.log"
      Stop/Shutdown/Preshutdown stop its loop gracefully; the log is
      "$env:ProgramData\dsreg-agent\agent.log" (a service has no console). SYSTEM sees device
      state, the join diagnostics and the registration event log.
    - -Mode ScheduledTask: instead registers the scheduled task
      "\dsreg-fleet\dsreg-agent (SYSTEM)" running `dsreg-agent run` (same flags, without
      --service) as NT AUTHORITY\SYSTEM at startup, restarted if it stops. Switching modes
      removes the other mode's registration.
    - Registers "\dsreg-fleet\dsreg-agent (user)": at each logon, runs
      `dsreg-agent send --user-context --user-inbox "$env:ProgramData\dsreg-agent\user-inbox"`
      as the signed-in user, because PRT and WAM state only exist in the user's context. The
      user run does not contact the collector (users cannot read the token or the CA): it
      drops its report into the inbox, and the SYSTEM agent (also given --user-inbox) checks
      it — user context, this device's machine id, size — and delivers it with its own
      credentials. The inbox ACL lets users create files there but not list the folder or read
      other users' files; SYSTEM and Administrators have full control.
    - The spool lives in "$env:ProgramData\dsreg-agent\spool" (SYSTEM), so reports survive
      days offline; user reports join it through the inbox.
    - Registers the event source "dsreg-agent" in the Application log: the agent writes its
      own warnings (event id 1001) and errors (event id 1000) there, for WEF / a SIEM; the
      log file keeps everything.

    Intune: package this folder (dsreg-agent.exe, agent.toml, both scripts) with
    IntuneWinAppUtil.exe, install command
      powershell.exe -ExecutionPolicy Bypass -File .\Install-DsregAgent.ps1 -Collector https://collector.contoso.com:50051
    uninstall command
      powershell.exe -ExecutionPolicy Bypass -File .\Uninstall-DsregAgent.ps1
    and detection rule: File, path "%ProgramFiles%\dsreg-agent", file "dsreg-agent.exe",
    detection method "String (version)", operator "Greater than or equal to", value = this
    package's version (dsreg-agent.exe carries a VERSIONINFO resource whose FileVersion is the
    crate version, e.g. 0.1.0.0; `dsreg-agent --version` prints it). A newer package then
    supersedes the old one, and a device with an older binary is detected as "not installed"
    and upgraded. Install as System.

.PARAMETER Collector
    The collector's gRPC URL. https:// in production; http:// only on a lab network.

.PARAMETER TokenFile
    Optional path to a file holding the agent token; copied next to the config with an ACL
    that only SYSTEM and Administrators can read.

.PARAMETER CaFile
    Optional PEM file of the CA that signed the collector's certificate.

.PARAMETER Source
    Folder holding dsreg-agent.exe and agent.toml (defaults to the script's folder).

.PARAMETER Mode
    Service (default): the SYSTEM agent is the Windows service "dsreg-agent".
    ScheduledTask: the SYSTEM agent is a scheduled task started at boot (the pre-service layout).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)] [string] $Collector,
    [string] $TokenFile,
    [string] $CaFile,
    [string] $Source = $PSScriptRoot,
    [int] $IntervalMinutes = 60,
    [ValidateSet('Service', 'ScheduledTask')] [string] $Mode = 'Service'
)

$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Install-DsregAgent.ps1 must run elevated (as Administrator or SYSTEM).'
}

$binDir = Join-Path $env:ProgramFiles 'dsreg-agent'
$dataDir = Join-Path $env:ProgramData 'dsreg-agent'
$exe = Join-Path $binDir 'dsreg-agent.exe'
$config = Join-Path $dataDir 'agent.toml'
$logFile = Join-Path $dataDir 'agent.log'
$userInbox = Join-Path $dataDir 'user-inbox'
$serviceName = 'dsreg-agent'
$taskPath = '\dsreg-fleet\'
$systemTaskName = 'dsreg-agent (SYSTEM)'

# The SYSTEM agent's command line; the service adds --service. deploy_consistency.rs checks
# these flags against `dsreg-agent run --help`.
$runArguments = "run --config `"$config`" --log-file `"$logFile`" --user-inbox `"$userInbox`""
$serviceCommandLine = "`"$exe`" run --service --config `"$config`" --log-file `"$logFile`" --user-inbox `"$userInbox`""
$userArguments = "send --user-context --user-inbox `"$userInbox`""

function Invoke-Sc {
    # sc.exe reports failure through its exit code only.
    & sc.exe @args | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "sc.exe $($args -join ' ') failed with exit code $LASTEXITCODE" }
}

function Remove-AgentService {
    $service = Get-Service -Name $serviceName -ErrorAction SilentlyContinue
    if (-not $service) { return }
    if ($service.Status -ne 'Stopped') {
        Stop-Service -Name $serviceName -Force -ErrorAction SilentlyContinue
        $service.WaitForStatus('Stopped', (New-TimeSpan -Seconds 60))
    }
    Invoke-Sc delete $serviceName
}

function Remove-SystemTask {
    $task = Get-ScheduledTask -TaskPath $taskPath -TaskName $systemTaskName -ErrorAction SilentlyContinue
    if ($task) {
        Stop-ScheduledTask -TaskPath $taskPath -TaskName $systemTaskName -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskPath $taskPath -TaskName $systemTaskName -Confirm:$false
    }
}

# A running agent holds dsreg-agent.exe open: stop (and unregister) the SYSTEM agent of an
# earlier install before copying the new binary; it is registered again below.
Remove-AgentService
Remove-SystemTask

New-Item -ItemType Directory -Force -Path $binDir, $dataDir, (Join-Path $dataDir 'spool'), $userInbox | Out-Null
Copy-Item -Force (Join-Path $Source 'dsreg-agent.exe') $exe

# The agent's own warnings and errors go to the Application log under this source.
# New-EventLog is Windows PowerShell 5.1 only; the .NET call works in PowerShell 7 too.
if (-not [System.Diagnostics.EventLog]::SourceExists($serviceName)) {
    [System.Diagnostics.EventLog]::CreateEventSource($serviceName, 'Application')
}

if (-not (Test-Path $config)) {
    $lines = @(
        '# dsreg-agent configuration (written by Install-DsregAgent.ps1)',
        "collector = `"$Collector`"",
        "interval_minutes = $IntervalMinutes",
        "spool_dir = `"$($dataDir -replace '\\','\\')\\spool`""
    )
    if ($TokenFile) {
        Copy-Item -Force $TokenFile (Join-Path $dataDir 'agent.token')
        $lines += "token_file = `"$($dataDir -replace '\\','\\')\\agent.token`""
    }
    if ($CaFile) {
        Copy-Item -Force $CaFile (Join-Path $dataDir 'collector-ca.pem')
        $lines += "ca_file = `"$($dataDir -replace '\\','\\')\\collector-ca.pem`""
    }
    Set-Content -Path $config -Value $lines -Encoding UTF8
}

# Only SYSTEM and Administrators may read the data folder (token, spool with device state);
# users may read the binary's folder only.
# SIDs, not names: S-1-5-18 is SYSTEM and S-1-5-32-544 Administrators on every language of Windows.
& icacls.exe $dataDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls $dataDir failed with exit code $LASTEXITCODE" }
# The user inbox: SYSTEM and Administrators full control; BUILTIN\Users (S-1-5-32-545) may only
# add files to the folder itself (WD = create files, no list, no read of what is there), and
# CREATOR OWNER (S-1-3-0) gets modify on the files a user creates, so the user's own
# `*.tmp` → `*.report` rename works. Users reach the folder through "bypass traverse
# checking" (granted to everyone by default), not through read rights on $dataDir.
& icacls.exe $userInbox /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' `
    '*S-1-5-32-545:(WD)' '*S-1-3-0:(OI)(IO)M' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls $userInbox failed with exit code $LASTEXITCODE" }

if ($Mode -eq 'Service') {
    New-Service -Name $serviceName -BinaryPathName $serviceCommandLine `
        -DisplayName 'dsreg-agent (Entra hybrid join telemetry)' `
        -Description 'Collects Microsoft Entra hybrid join state (dsregcmd /status, registration events) and reports it to the dsreg-fleet collector.' `
        -StartupType Automatic | Out-Null
    # Delayed start: after the network and the domain logon services are up.
    Invoke-Sc config $serviceName start= delayed-auto
    # Restart after 1 min, 1 min, then 5 min; the count resets after a day without failures.
    Invoke-Sc failure $serviceName reset= 86400 actions= restart/60000/restart/60000/restart/300000
    # Also restart when the service stops itself with a non-zero exit code (not only on a crash).
    Invoke-Sc failureflag $serviceName 1
    # A per-service SID (NT SERVICE\dsreg-agent) that ACLs can name.
    Invoke-Sc sidtype $serviceName unrestricted
} else {
    $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -RestartCount 999 `
        -RestartInterval (New-TimeSpan -Minutes 5) -ExecutionTimeLimit ([TimeSpan]::Zero) `
        -MultipleInstances IgnoreNew
    $systemAction = New-ScheduledTaskAction -Execute $exe -Argument $runArguments
    $systemTrigger = New-ScheduledTaskTrigger -AtStartup
    $systemPrincipal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    Register-ScheduledTask -Force -TaskPath $taskPath -TaskName $systemTaskName `
        -Action $systemAction -Trigger $systemTrigger -Principal $systemPrincipal -Settings $settings | Out-Null
}

$userAction = New-ScheduledTaskAction -Execute $exe -Argument $userArguments
$userTrigger = New-ScheduledTaskTrigger -AtLogOn
$userPrincipal = New-ScheduledTaskPrincipal -GroupId 'S-1-5-32-545' -RunLevel Limited  # BUILTIN\Users
$userSettings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Minutes 5)
Register-ScheduledTask -Force -TaskPath $taskPath -TaskName 'dsreg-agent (user)' `
    -Action $userAction -Trigger $userTrigger -Principal $userPrincipal -Settings $userSettings | Out-Null

if ($Mode -eq 'Service') {
    Start-Service -Name $serviceName
} else {
    Start-ScheduledTask -TaskPath $taskPath -TaskName $systemTaskName
}
Write-Output "dsreg-agent installed to $binDir ($Mode); reporting to $Collector; log $logFile."
