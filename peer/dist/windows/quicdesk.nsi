; quicdesk's Windows installer (NSIS 3, 64-bit stub). It installs peer.exe and rendezvous.exe
; into $PROGRAMFILES64\quicdesk, writes uninstall.exe and the Add/Remove Programs entry
; (HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\quicdesk), and starts the host at
; every user's logon (HKLM\Software\Microsoft\Windows\CurrentVersion\Run, value quicdesk-host:
; "$INSTDIR\peer.exe" host, with each user's own data directory: each user joins and sets a
; password once, `peer join INVITE` and `peer password set`).
;
; The uninstaller stops and deletes the system service if `peer service install --system` made
; one (it runs the peer.exe being removed), ends running peer.exe and rendezvous.exe processes,
; and removes the files, the Run value, the Add/Remove Programs entry and the directory. It
; cannot reach other users' own logon starts (`peer service install`, in their HKCU), which then
; name a missing program and do nothing; users' data directories are kept.
;
; Both work silently with /S. Build (Debian's nsis, makensis 3.11):
;   makensis -DPEER=target/.../peer.exe -DRENDEZVOUS=target/.../rendezvous.exe \
;            -DOUTFILE=quicdesk-setup.exe [-DVERSION=0.1.0] peer/dist/windows/quicdesk.nsi
; Paths given with -D are taken relative to this script's directory unless absolute.
; Checked: it compiles here, and the installer and uninstaller ran under Wine (64-bit only,
; hence the amd64 stub: Wine here has no 32-bit support).

Unicode true
Target amd64-unicode

!include LogicLib.nsh

!ifndef PEER
  !error "give peer.exe: makensis -DPEER=path\to\peer.exe ..."
!endif
!ifndef RENDEZVOUS
  !error "give rendezvous.exe: makensis -DRENDEZVOUS=path\to\rendezvous.exe ..."
!endif
!ifndef OUTFILE
  !define OUTFILE "quicdesk-setup.exe"
!endif
!ifndef VERSION
  !define VERSION "0.1.0"
!endif

!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\quicdesk"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
; The Run value and the system service share this name (peer/src/service/mod.rs, NAME).
!define SERVICE "quicdesk-host"

Name "quicdesk"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\quicdesk"
RequestExecutionLevel admin
SetCompressor /SOLID lzma
ShowInstDetails show
ShowUninstDetails show

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles

Function .onInit
  SetRegView 64
FunctionEnd

Function un.onInit
  SetRegView 64
FunctionEnd

Section "quicdesk"
  ; An upgrade: the files in use are let go first, and the system service (if any) comes back
  ; after. `sc stop` exits with 0 only when the service existed and was running.
  nsExec::Exec '"$SYSDIR\sc.exe" stop ${SERVICE}'
  Pop $R0
  ${If} $R0 == 0
    Sleep 3000
  ${EndIf}
  nsExec::Exec '"$SYSDIR\taskkill.exe" /F /IM peer.exe'
  Pop $0

  SetOutPath "$INSTDIR"
  File "/oname=peer.exe" "${PEER}"
  File "/oname=rendezvous.exe" "${RENDEZVOUS}"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "quicdesk"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "quicdesk"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\peer.exe"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1

  ; Every user's logon starts the host with their own data directory.
  WriteRegStr HKLM "${RUN_KEY}" "${SERVICE}" '"$INSTDIR\peer.exe" host'

  ${If} $R0 == 0
    nsExec::Exec '"$SYSDIR\sc.exe" start ${SERVICE}'
    Pop $0
  ${EndIf}
SectionEnd

Section "Uninstall"
  DeleteRegValue HKLM "${RUN_KEY}" "${SERVICE}"
  ; This (administrator's) own logon start, if they made one with `peer service install`.
  DeleteRegValue HKCU "${RUN_KEY}" "${SERVICE}"
  ; The system service, if `peer service install --system` made one: stopped, then deleted.
  nsExec::Exec '"$SYSDIR\sc.exe" stop ${SERVICE}'
  Pop $0
  ${If} $0 == 0
    Sleep 3000
  ${EndIf}
  nsExec::Exec '"$SYSDIR\sc.exe" delete ${SERVICE}'
  Pop $0
  nsExec::Exec '"$SYSDIR\taskkill.exe" /F /IM peer.exe'
  Pop $0
  nsExec::Exec '"$SYSDIR\taskkill.exe" /F /IM rendezvous.exe'
  Pop $0

  Delete /REBOOTOK "$INSTDIR\peer.exe"
  Delete /REBOOTOK "$INSTDIR\rendezvous.exe"
  Delete "$INSTDIR\uninstall.exe"
  RMDir /REBOOTOK "$INSTDIR"

  DeleteRegKey HKLM "${UNINSTALL_KEY}"
SectionEnd
